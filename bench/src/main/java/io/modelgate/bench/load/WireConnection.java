package io.modelgate.bench.load;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoop;
import io.netty.channel.epoll.EpollEventLoop;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.handler.codec.http2.DefaultHttp2Connection;
import io.netty.handler.codec.http2.DefaultHttp2ConnectionDecoder;
import io.netty.handler.codec.http2.DefaultHttp2ConnectionEncoder;
import io.netty.handler.codec.http2.DefaultHttp2FrameReader;
import io.netty.handler.codec.http2.DefaultHttp2FrameWriter;
import io.netty.handler.codec.http2.DefaultHttp2Headers;
import io.netty.handler.codec.http2.DefaultHttp2HeadersDecoder;
import io.netty.handler.codec.http2.Http2Connection;
import io.netty.handler.codec.http2.Http2ConnectionAdapter;
import io.netty.handler.codec.http2.Http2ConnectionDecoder;
import io.netty.handler.codec.http2.Http2ConnectionEncoder;
import io.netty.handler.codec.http2.Http2ConnectionHandler;
import io.netty.handler.codec.http2.Http2Error;
import io.netty.handler.codec.http2.Http2FrameAdapter;
import io.netty.handler.codec.http2.Http2Headers;
import io.netty.handler.codec.http2.Http2Settings;
import io.netty.handler.codec.http2.Http2Stream;
import io.netty.util.AsciiString;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

/**
 * One HTTP/2 connection that speaks gRPC unary calls of one method with one request, without
 * grpc-java: the load generator's unary transport. What grpc-java's client does per call (a call
 * object, context, deadline and executor bookkeeping, marshaller streams, a listener chain) costs
 * tens of µs of CPU, as much as the server under test spends; here a call is a HEADERS frame
 * encoded from one immutable header block, a DATA frame that shares one pre-built gRPC message
 * (length prefix and the serialized request, {@link ByteBuf#retainedDuplicate}), and an answer read
 * as far as the caller's {@link Reader} needs. The wire is ordinary gRPC over HTTP/2 (prior
 * knowledge, plaintext), so any KServe v2 server sees an ordinary call.
 *
 * <p><b>Threading.</b> A connection is pinned to one event loop for its life, reconnections
 * included. {@link #send} runs on that loop (from any other thread it is handed over); every
 * {@link Call} is answered on it, exactly once: with the call's status when its trailers arrive,
 * or UNAVAILABLE / CANCELLED / INTERNAL when its stream is reset or the connection closes first.
 * A connection that is closed or refused by the server's GOAWAY fails calls at once with
 * UNAVAILABLE and starts one new connection in the background (at most one attempt per 100 ms); a
 * call beyond the server's limit of concurrent streams is not sent ({@link #STREAM_LIMIT}).
 */
final class WireConnection implements AutoCloseable {
  /** gRPC status codes this class sets itself. */
  static final int CANCELLED = 1;
  static final int UNKNOWN = 2;
  static final int RESOURCE_EXHAUSTED = 8;
  static final int INTERNAL = 13;
  static final int UNAVAILABLE = 14;
  static final int UNAUTHENTICATED = 16;
  static final int PERMISSION_DENIED = 7;
  static final int UNIMPLEMENTED = 12;
  /** Not a gRPC status: the answer was OK but its message could not be read. */
  static final int UNREADABLE = -1;
  /**
   * Not a gRPC status: the call was not sent, the connection having as many calls in flight as
   * the server allows ({@code SETTINGS_MAX_CONCURRENT_STREAMS}).
   */
  static final int STREAM_LIMIT = -2;

  private static final AsciiString GRPC_STATUS = AsciiString.cached("grpc-status");
  private static final AsciiString GRPC_MESSAGE = AsciiString.cached("grpc-message");
  private static final AsciiString GRPC_DETAILS = AsciiString.cached("grpc-status-details-bin");

  /** How the answer's message is read: lean (a field or two) or whole (checking). */
  interface Reader {
    /**
     * Reads the answer's protobuf message, {@code message} positioned on its first byte (empty
     * when the answer carried none). Called on the event loop; {@code message} is valid only
     * during the call. Returns what {@link Call#answered} receives.
     */
    Object read(ByteBuf message);
  }

  /**
   * One call in flight: subclassed by the caller for its own state. Not reusable. The answer
   * comes on the connection's event loop.
   */
  abstract static class Call {
    private final ByteBuf message;
    private final Reader reader;
    /** The answer's body so far (HTTP/2 DATA frames), or null. */
    private ByteBuf body;
    private boolean done;

    /**
     * @param message the request as one gRPC message ({@link #message(byte[])}), shared by calls
     * @param reader how the answer's message is read
     */
    Call(ByteBuf message, Reader reader) {
      this.message = message;
      this.reader = reader;
    }

    /**
     * The call ended with gRPC status {@code code} (0: OK). {@code read} is what the {@link
     * Reader} made of the answer's message when OK, otherwise null; {@code trailers} carry
     * {@code grpc-message} and {@code grpc-status-details-bin} when the server sent them (null
     * where the stream or the connection ended without trailers).
     */
    abstract void answered(int code, Object read, Http2Headers trailers);
  }

  private final EventLoop loop;
  private final InetSocketAddress address;
  private final Http2Headers headers;
  /** The current connection's handler; replaced by a reconnection. Event loop only. */
  private Handler current;
  private boolean reconnecting;
  /** When a failed connection may next be tried again (System.nanoTime()). Event loop only. */
  private long nextConnectNanos;
  private volatile boolean closed;

  private WireConnection(EventLoop loop, InetSocketAddress address, String path, String apiKey) {
    this.loop = loop;
    this.address = address;
    DefaultHttp2Headers h = new DefaultHttp2Headers(false);
    h.method("POST").scheme("http").path(path).authority(address.getHostString() + ":" + address.getPort());
    h.add(AsciiString.cached("content-type"), AsciiString.cached("application/grpc"));
    h.add(AsciiString.cached("te"), AsciiString.cached("trailers"));
    h.add(AsciiString.cached("user-agent"), AsciiString.cached("modelgate-bench"));
    if (apiKey != null) {
      h.add(AsciiString.cached("authorization"), "Bearer " + apiKey);
    }
    this.headers = h;
  }

  /**
   * {@code request} (a serialized message) as one uncompressed gRPC message, to be shared by every
   * call that sends it: the 5-byte length prefix and the bytes, in one direct buffer that is never
   * released (calls send duplicates of it).
   */
  static ByteBuf message(byte[] request) {
    java.nio.ByteBuffer frame = java.nio.ByteBuffer.allocateDirect(5 + request.length);
    frame.put((byte) 0).putInt(request.length).put(request).flip();
    return Unpooled.unreleasableBuffer(Unpooled.wrappedBuffer(frame));
  }

  /**
   * A connection to {@code address} on {@code loop} (epoll or NIO, as the loop is), calling
   * {@code path} (e.g. {@code /inference.GRPCInferenceService/ModelInfer}) with {@code
   * authorization: Bearer apiKey} unless null. Waits up to 10 s for the TCP connection; one that
   * fails leaves the connection trying again on the next call.
   */
  static WireConnection open(EventLoop loop, InetSocketAddress address, String path, String apiKey)
      throws InterruptedException {
    WireConnection connection = new WireConnection(loop, address, path, apiKey);
    ChannelFuture connected = loop.submit(connection::connect).syncUninterruptibly().getNow();
    connected.await(10, TimeUnit.SECONDS);
    return connection;
  }

  /** The event loop this connection lives on. */
  EventLoop eventLoop() {
    return loop;
  }

  /** Event loop only: a new TCP connection, which becomes {@link #current}. */
  private ChannelFuture connect() {
    Handler handler = newHandler();
    current = handler;
    reconnecting = true;
    nextConnectNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(100);
    ChannelFuture future = new Bootstrap()
        .group(loop)
        .channel(loop instanceof EpollEventLoop ? EpollSocketChannel.class : NioSocketChannel.class)
        .option(ChannelOption.TCP_NODELAY, true)
        .option(ChannelOption.ALLOCATOR, ByteBufAllocator.DEFAULT)
        .handler(new ChannelInitializer<Channel>() {
          @Override
          protected void initChannel(Channel channel) {
            channel.pipeline().addLast(handler);
          }
        })
        .connect(address);
    future.addListener(f -> reconnecting = false);
    return future;
  }

  /**
   * Sends one call; its answer comes to {@code call} on the event loop. Inside a read of this
   * connection (a caller answering an answer) the frames go out as the read completes, with every
   * other call sent in it; otherwise at once. From another thread the call is handed to the loop.
   */
  void send(Call call) {
    if (loop.inEventLoop()) {
      write(call);
      Handler handler = current;
      if (handler != null && !handler.reading) {
        flush();
      }
    } else {
      loop.execute(() -> {
        write(call);
        flush();
      });
    }
  }

  /**
   * Event loop only: writes {@code call}'s frames without flushing them, for a pacer that sends a
   * batch and then {@link #flush}es once.
   */
  void write(Call call) {
    if (closed) {
      finish(call, CANCELLED, null, null);
      return;
    }
    Handler handler = current;
    boolean dead = handler == null || handler.ctx == null || !handler.ctx.channel().isActive()
        || handler.connection().goAwayReceived();
    if (dead) {
      if (!reconnecting && System.nanoTime() - nextConnectNanos >= 0) {
        connect();
      }
      finish(call, UNAVAILABLE, null, null);
      return;
    }
    if (!handler.connection().local().canOpenStream()) {
      // As many calls in flight on this connection as the server's SETTINGS allow.
      finish(call, STREAM_LIMIT, null, null);
      return;
    }
    handler.start(call);
  }

  /** Event loop only: sends what {@link #write} wrote since the last flush. */
  void flush() {
    Handler handler = current;
    if (handler != null && handler.ctx != null) {
      handler.flush(handler.ctx);
    }
  }

  /** Ends {@code call} with {@code code}, once; releases what it held. */
  private void finish(Call call, int code, Http2Headers trailers, Object read) {
    if (call.done) {
      return;
    }
    call.done = true;
    if (call.body != null) {
      call.body.release();
      call.body = null;
    }
    call.answered(code, read, trailers);
  }

  @Override
  public void close() {
    closed = true;
    loop.execute(() -> {
      if (current != null && current.ctx != null) {
        current.ctx.channel().close();
      }
    });
  }

  private Handler newHandler() {
    Http2Connection connection = new DefaultHttp2Connection(false);
    // Every stream sends one small message at once: no priorities to weigh, so the cheapest
    // distributor of the connection's window.
    connection.remote().flowController(
        new io.netty.handler.codec.http2.DefaultHttp2RemoteFlowController(connection,
            new io.netty.handler.codec.http2.UniformStreamByteDistributor(connection)));
    Http2ConnectionEncoder encoder = new DefaultHttp2ConnectionEncoder(connection, new DefaultHttp2FrameWriter());
    Http2ConnectionDecoder decoder = new DefaultHttp2ConnectionDecoder(connection, encoder,
        new DefaultHttp2FrameReader(new DefaultHttp2HeadersDecoder(false)));
    Http2Settings settings = new Http2Settings().initialWindowSize(1 << 20).pushEnabled(false);
    return new Handler(decoder, encoder, settings);
  }

  /** The gRPC status an HTTP status means when an answer carries none (gRPC's HTTP mapping). */
  static int statusOfHttp(int http) {
    return switch (http) {
      case 400 -> INTERNAL;
      case 401 -> UNAUTHENTICATED;
      case 403 -> PERMISSION_DENIED;
      case 404 -> UNIMPLEMENTED;
      case 429, 502, 503, 504 -> UNAVAILABLE;
      default -> UNKNOWN;
    };
  }

  /** One TCP connection's HTTP/2 state; also the listener of its frames and streams. */
  private final class Handler extends Http2ConnectionHandler {
    private final Http2Connection.PropertyKey callKey;
    private ChannelHandlerContext ctx;
    /** Whether a read is under way (its completion flushes what was written meanwhile). */
    private boolean reading;

    Handler(Http2ConnectionDecoder decoder, Http2ConnectionEncoder encoder, Http2Settings settings) {
      super(decoder, encoder, settings);
      callKey = connection().newKey();
      decoder.frameListener(new Frames());
      connection().addListener(new Http2ConnectionAdapter() {
        @Override
        public void onStreamClosed(Http2Stream stream) {
          Call call = stream.getProperty(callKey);
          if (call != null) {
            // Reset or cut off before its trailers: the call never got a status from the server.
            finish(call, UNAVAILABLE, null, null);
          }
        }
      });
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) throws Exception {
      this.ctx = ctx;
      super.handlerAdded(ctx);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
      reading = true;
      super.channelRead(ctx, msg);
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) throws Exception {
      reading = false;
      super.channelReadComplete(ctx);
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) throws Exception {
      super.channelActive(ctx);
      // A large connection window, so that many answers in flight are never held by flow control.
      connection().local().flowController().incrementWindowSize(connection().connectionStream(), (1 << 24) - 65_535);
      flush(ctx);
    }

    /** Opens a stream for {@code call} and writes its headers and message (not flushed). */
    void start(Call call) {
      int id = connection().local().incrementAndGetNextStreamId();
      encoder().writeHeaders(ctx, id, headers, 0, false, ctx.newPromise());
      Http2Stream stream = connection().stream(id);
      if (stream == null) {
        finish(call, UNAVAILABLE, null, null);
        return;
      }
      stream.setProperty(callKey, call);
      encoder().writeData(ctx, id, call.message.retainedDuplicate(), 0, true, ctx.newPromise());
    }

    /** The stream's call, taken off it when {@code last} (no other frame will end it). */
    private Call call(int streamId, boolean last) {
      Http2Stream stream = connection().stream(streamId);
      if (stream == null) {
        return null;
      }
      return last ? stream.removeProperty(callKey) : stream.getProperty(callKey);
    }

    private final class Frames extends Http2FrameAdapter {
      @Override
      public int onDataRead(ChannelHandlerContext ctx, int streamId, ByteBuf data, int padding, boolean endOfStream) {
        int processed = data.readableBytes() + padding;
        Call call = call(streamId, endOfStream);
        if (call != null) {
          if (call.body == null) {
            call.body = data.retainedSlice();
          } else {
            CompositeByteBuf both = call.body instanceof CompositeByteBuf c ? c : ctx.alloc().compositeBuffer().addComponent(true, call.body);
            both.addComponent(true, data.retainedSlice());
            call.body = both;
          }
          if (endOfStream) {
            // A body without trailers: gRPC requires them.
            finish(call, INTERNAL, null, null);
          }
        }
        return processed;
      }

      @Override
      public void onHeadersRead(ChannelHandlerContext ctx, int streamId, Http2Headers headers, int padding, boolean endOfStream) {
        Call call = call(streamId, endOfStream);
        if (call == null) {
          return;
        }
        CharSequence status = headers.get(GRPC_STATUS);
        if (!endOfStream) {
          // The answer's leading headers: an HTTP error without a gRPC status ends the call now.
          CharSequence http = headers.status();
          if (status == null && http != null && !AsciiString.contentEquals(http, "200")) {
            call(streamId, true);
            finish(call, statusOfHttp(Integer.parseInt(http.toString())), headers, null);
          }
          return;
        }
        int code;
        if (status != null) {
          code = parseIntOr(status, UNKNOWN);
        } else {
          // Trailers without a gRPC status, or a headers-only HTTP error.
          int http = parseIntOr(headers.status(), 200);
          code = http == 200 ? INTERNAL : statusOfHttp(http);
        }
        Object read = null;
        if (code == 0) {
          ByteBuf body = call.body;
          try {
            if (body == null || body.readableBytes() < 5) {
              read = call.reader.read(Unpooled.EMPTY_BUFFER);
            } else {
              int length = body.getInt(body.readerIndex() + 1);
              read = call.reader.read(body.slice(body.readerIndex() + 5, Math.min(length, body.readableBytes() - 5)));
            }
          } catch (RuntimeException e) {
            code = UNREADABLE;
          }
        }
        finish(call, code, headers, read);
      }

      @Override
      public void onHeadersRead(ChannelHandlerContext ctx, int streamId, Http2Headers headers, int streamDependency,
          short weight, boolean exclusive, int padding, boolean endOfStream) {
        onHeadersRead(ctx, streamId, headers, padding, endOfStream);
      }

      @Override
      public void onRstStreamRead(ChannelHandlerContext ctx, int streamId, long errorCode) {
        Call call = call(streamId, true);
        if (call != null) {
          finish(call, errorCode == Http2Error.CANCEL.code() ? CANCELLED
              : errorCode == Http2Error.REFUSED_STREAM.code() ? UNAVAILABLE : INTERNAL, null, null);
        }
      }
    }
  }

  private static int parseIntOr(CharSequence text, int otherwise) {
    if (text == null) {
      return otherwise;
    }
    try {
      return Integer.parseInt(text.toString());
    } catch (NumberFormatException e) {
      return otherwise;
    }
  }

  /** The message of a failed call's trailers ({@code grpc-message}, percent-decoded), or "". */
  static String message(Http2Headers trailers) {
    CharSequence text = trailers == null ? null : trailers.get(GRPC_MESSAGE);
    return text == null ? "" : java.net.URLDecoder.decode(text.toString().replace("+", "%2B"), java.nio.charset.StandardCharsets.UTF_8);
  }

  /** The {@code google.rpc.Status} of a failed call's trailers ({@code grpc-status-details-bin}), or null. */
  static com.google.rpc.Status details(Http2Headers trailers) {
    CharSequence text = trailers == null ? null : trailers.get(GRPC_DETAILS);
    if (text == null) {
      return null;
    }
    try {
      return com.google.rpc.Status.parseFrom(java.util.Base64.getDecoder().decode(pad(text.toString())));
    } catch (IllegalArgumentException | com.google.protobuf.InvalidProtocolBufferException e) {
      return null;
    }
  }

  /** gRPC sends binary headers' base64 unpadded. */
  private static String pad(String base64) {
    int missing = (4 - base64.length() % 4) % 4;
    return missing == 0 ? base64 : base64 + "=".repeat(missing);
  }
}
