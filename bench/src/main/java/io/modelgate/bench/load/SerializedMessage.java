package io.modelgate.bench.load;

import io.grpc.Drainable;
import io.grpc.KnownLength;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * A serialized message as the load generator hands it to grpc-java on a stream: two byte arrays
 * (the request serialized once, and what a call appends to it: its id), its length known and drained into the
 * transport in one or two writes, with no copy into an intermediate buffer. Read once, by one
 * thread.
 */
final class SerializedMessage extends InputStream implements KnownLength, Drainable {
  private final byte[] first;
  private final byte[] second;
  private int position;

  SerializedMessage(byte[] first, byte[] second) {
    this.first = first;
    this.second = second;
  }

  @Override
  public int drainTo(OutputStream target) throws IOException {
    int drained = available();
    if (position < first.length) {
      target.write(first, position, first.length - position);
      target.write(second);
    } else {
      int offset = position - first.length;
      target.write(second, offset, second.length - offset);
    }
    position = first.length + second.length;
    return drained;
  }

  @Override
  public int available() {
    return first.length + second.length - position;
  }

  @Override
  public int read() {
    if (position < first.length) {
      return first[position++] & 0xff;
    }
    int offset = position - first.length;
    if (offset < second.length) {
      position++;
      return second[offset] & 0xff;
    }
    return -1;
  }
}
