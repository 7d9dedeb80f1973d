package io.modelgate.bench.load;

import io.modelgate.runtime.threads.DaemonThreads;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
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
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.http2.DefaultHttp2Headers;
import io.netty.handler.codec.http2.DefaultHttp2HeadersDecoder;
import io.netty.handler.codec.http2.DefaultHttp2HeadersEncoder;
import io.netty.handler.codec.http2.Http2Exception;
import io.netty.handler.codec.http2.Http2Headers;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.AsciiString;
import io.netty.util.collection.IntObjectHashMap;
import io.netty.util.collection.IntObjectMap;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One HTTP/2 connection that speaks gRPC unary calls of one method with one request, without
 * grpc-java and without Netty's HTTP/2 connection machinery: the load generator's unary transport.
 * What grpc-java's client does per call (a call object, context, deadline and executor
 * bookkeeping, marshaller streams, a listener chain) costs tens of µs of CPU, as much as the
 * server under test spends; Netty's {@code Http2ConnectionHandler} still allocates about 2 KB a
 * call (stream objects, promises, flow-control state, a header map). Here a call is:
 * <ul>
 *   <li>a HEADERS frame whose HPACK block is encoded by a real encoder until two encodings come
 *       out the same, and from then on copied as those bytes (every call sends the same headers,
 *       so once they are in the server's dynamic table the block no longer changes; a new table
 *       size from the server starts encoding again);
 *   <li>DATA frames carrying one pre-built gRPC message (length prefix and the serialized
 *       request), copied into the write buffer when small, sent as slices of the shared message
 *       when large, within the server's flow-control windows (a call waits for WINDOW_UPDATEs);
 *   <li>an answer read as its frames arrive: a message that fits one DATA frame (the usual case)
 *       is handed to the caller's {@link Reader} in place, a larger one gathered first; the
 *       trailers decoded by Netty's HPACK decoder into one header map reused by the connection.
 * </ul>
 * The wire is ordinary gRPC over HTTP/2 (RFC 9113; plaintext with prior knowledge, or TLS whose
 * ALPN agrees on h2, the frames then going through Netty's {@code SslHandler}): SETTINGS and
 * their acknowledgement, PING answered, GOAWAY followed, CONTINUATION and padding read, windows
 * returned as answers are consumed. Any KServe v2 server sees an ordinary call.
 *
 * <p><b>Threading.</b> A connection is pinned to one event loop for its life, reconnections
 * included; all its state is that loop's. {@link #send} runs on that loop (from any other thread it
 * is handed over); every {@link Call} is answered on it, exactly once: with the call's status when
 * its trailers arrive, or UNAVAILABLE / CANCELLED / INTERNAL when its stream is reset or the
 * connection closes first. A server's GOAWAY (a connection past its maximum age, a server going
 * away) is followed as gRPC clients follow it: a new connection is opened at once, calls made
 * meanwhile wait for it (at most {@value #MAX_PARKED}), and the calls the server says it did not
 * take (above its last stream) go out again on it, once; those it took are answered on the old
 * connection, which closes when they are. A connection that is closed under its calls fails them,
 * and new calls at once, with UNAVAILABLE while one new connection is tried in the background (at
 * most one attempt per 100 ms; calls made during an attempt wait for it). Given a {@link
 * Destination}, each new connection first asks it where to go, off the event loop (a host name
 * looked up again, as gRPC clients re-resolve when a connection ends, so that a scale-out is
 * found); calls made meanwhile wait as they do for the connection. A call beyond the server's
 * limit of concurrent streams is not sent ({@link #STREAM_LIMIT}).
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

  private static final byte[] PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
  // Frame types and flags (RFC 9113, section 6).
  private static final int DATA = 0;
  private static final int HEADERS = 1;
  private static final int RST_STREAM = 3;
  private static final int SETTINGS = 4;
  private static final int PUSH_PROMISE = 5;
  private static final int PING = 6;
  private static final int GOAWAY = 7;
  private static final int WINDOW_UPDATE = 8;
  private static final int CONTINUATION = 9;
  private static final int END_STREAM = 0x1;
  private static final int ACK = 0x1;
  private static final int END_HEADERS = 0x4;
  private static final int PADDED = 0x8;
  private static final int PRIORITY = 0x20;
  // Settings.
  private static final int HEADER_TABLE_SIZE = 1;
  private static final int ENABLE_PUSH = 2;
  private static final int MAX_CONCURRENT_STREAMS = 3;
  private static final int INITIAL_WINDOW_SIZE = 4;
  private static final int MAX_FRAME_SIZE = 5;
  /** Error codes of RST_STREAM and GOAWAY. */
  private static final int REFUSED_STREAM = 7;
  private static final int CANCEL = 8;
  /** HTTP/2's starting windows and frame size, before SETTINGS change them. */
  private static final int DEFAULT_WINDOW = 65_535;
  private static final int DEFAULT_MAX_FRAME = 16_384;
  /** What this client lets the server send before it returns the bytes: per stream, and per connection. */
  static final int STREAM_WINDOW = 1 << 20;
  static final int CONNECTION_WINDOW = 1 << 24;
  /** The largest header block read (HEADERS and its CONTINUATIONs), as the decoder's limit on the header list. */
  private static final int MAX_HEADER_BLOCK = 1 << 20;
  /** A DATA frame at most this large is copied into the write buffer; a larger one is a slice of the message. */
  private static final int COPY_LIMIT = 4096;

  /** How the answer's message is read: lean (a field or two) or whole (checking). */
  interface Reader {
    /**
     * Reads the answer's protobuf message, {@code message} positioned on its first byte (empty
     * when the answer carried none). Called on the event loop, possibly before the call's status
     * is known (what it returns is dropped if the call fails); {@code message} is valid only
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
    private int streamId;
    /** Bytes of {@link #message} sent so far, and what the stream's send window allows now. */
    private int sent;
    private long window;
    private boolean waitingForWindow;
    /** The answer's body so far, gathered when its message spans DATA frames; null until then. */
    private ByteBuf body;
    /** Whether the message was read (in place, from one DATA frame); what the reader made of it. */
    private boolean read;
    private Object readResult;
    private boolean unreadable;
    /** Bytes received on this stream and not yet returned to the server. */
    private int unreturned;
    private boolean done;
    /** Whether the call went out again after a GOAWAY said the server never took it. */
    private boolean retried;

    /**
     * @param message the request as one gRPC message ({@link #message(byte[])}), shared by calls
     * @param reader how the answer's message is read
     */
    Call(ByteBuf message, Reader reader) {
      this.message = message;
      this.reader = reader;
    }

    /** Back to unsent, for a new stream: the server never took the last one. */
    private void restart() {
      streamId = 0;
      sent = 0;
      window = 0;
      waitingForWindow = false;
      if (body != null) {
        body.release();
        body = null;
      }
      read = false;
      readResult = null;
      unreadable = false;
      unreturned = 0;
    }

    /**
     * The call ended with gRPC status {@code code} (0: OK). {@code read} is what the {@link
     * Reader} made of the answer's message when OK, otherwise null; {@code trailers} carry
     * {@code grpc-message} and {@code grpc-status-details-bin} when the server sent them (null
     * where the stream or the connection ended without trailers). {@code trailers} are valid only
     * during this call: the connection decodes the next answer's into the same map.
     */
    abstract void answered(int code, Object read, Http2Headers trailers);
  }

  /**
   * Where a connection goes when it is made again: looked up on a thread of its own (it may block,
   * on DNS), never on the event loop. A failure keeps the address before.
   */
  @FunctionalInterface
  interface Destination {
    InetSocketAddress next();
  }

  /** The thread that looks destinations up, shared by every connection; started on first use. */
  private static final class Lookups {
    static final java.util.concurrent.ExecutorService THREAD = DaemonThreads.single("modelgate-bench-lookup");
  }

  private final EventLoop loop;
  /** Where the current or next connection goes. Event loop only, after construction. */
  private InetSocketAddress address;
  /** Null: always {@link #address}. */
  private final Destination destination;
  /** Null for plaintext. */
  private final SslContext tls;
  private final Http2Headers headers;
  /** The current connection's handler; replaced by a reconnection. Event loop only. */
  private Handler current;
  private boolean reconnecting;
  /** Calls made while a new connection is on its way, sent when it is open. Event loop only. */
  private final ArrayDeque<Call> parked = new ArrayDeque<>();
  /** The most calls that wait for a new connection; beyond, they fail UNAVAILABLE at once. */
  static final int MAX_PARKED = 1 << 16;
  /** When a failed connection may next be tried again (System.nanoTime()). Event loop only. */
  private long nextConnectNanos;
  private volatile boolean closed;

  private WireConnection(EventLoop loop, InetSocketAddress address, Destination destination, String path, String apiKey,
      SslContext tls) {
    this.loop = loop;
    this.address = address;
    this.destination = destination;
    this.tls = tls;
    DefaultHttp2Headers h = new DefaultHttp2Headers(false);
    h.method("POST").scheme(tls == null ? "http" : "https").path(path).authority(address.getHostString() + ":" + address.getPort());
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
   * released (calls read it, never consume it).
   */
  static ByteBuf message(byte[] request) {
    java.nio.ByteBuffer frame = java.nio.ByteBuffer.allocateDirect(5 + request.length);
    frame.put((byte) 0).putInt(request.length).put(request).flip();
    return Unpooled.unreleasableBuffer(Unpooled.wrappedBuffer(frame));
  }

  /**
   * A connection to {@code address} on {@code loop} (epoll or NIO, as the loop is), calling
   * {@code path} (e.g. {@code /inference.GRPCInferenceService/ModelInfer}) with {@code
   * authorization: Bearer apiKey} unless null, over TLS with {@code tls} (a client context whose
   * ALPN offers h2) unless null. Waits up to 10 s for the TCP connection; one that fails leaves the
   * connection trying again on the next call. Calls sent before the TLS handshake ends wait for it
   * in the {@code SslHandler}; a handshake that fails closes the connection and fails them.
   */
  static WireConnection open(EventLoop loop, InetSocketAddress address, String path, String apiKey, SslContext tls)
      throws InterruptedException {
    return open(loop, address, null, path, apiKey, tls);
  }

  /**
   * As {@link #open(EventLoop, InetSocketAddress, String, String, SslContext)}, the first
   * connection to {@code address} and every later one where {@code destination} says (null: to
   * {@code address} again).
   */
  static WireConnection open(EventLoop loop, InetSocketAddress address, Destination destination, String path, String apiKey,
      SslContext tls) throws InterruptedException {
    WireConnection connection = new WireConnection(loop, address, destination, path, apiKey, tls);
    ChannelFuture connected = loop.submit(connection::connect).syncUninterruptibly().getNow();
    connected.await(10, TimeUnit.SECONDS);
    return connection;
  }

  /** The event loop this connection lives on. */
  EventLoop eventLoop() {
    return loop;
  }

  /** The address the current (or next) connection goes to. Event loop only. */
  InetSocketAddress address() {
    return address;
  }

  /**
   * Event loop only: a new connection, where the {@link Destination} says (looked up first, off
   * the loop; calls wait meanwhile as they do for the connection), or to the same address.
   */
  private void reconnect() {
    if (destination == null) {
      connect();
      return;
    }
    reconnecting = true;
    nextConnectNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(100);
    java.util.concurrent.CompletableFuture.supplyAsync(destination::next, Lookups.THREAD)
        .whenComplete((next, failure) -> loop.execute(() -> {
          if (next != null) {
            address = next;
          }
          if (closed) {
            reconnecting = false;
            failParked();
          } else {
            connect();
          }
        }));
  }

  /** Event loop only: a new TCP connection to {@link #address}, which becomes {@link #current}. */
  private ChannelFuture connect() {
    Handler handler = new Handler();
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
            if (tls != null) {
              // The server's certificate must name the host, as gRPC clients check it.
              SslHandler ssl = tls.newHandler(channel.alloc(), address.getHostString(), address.getPort());
              javax.net.ssl.SSLParameters parameters = ssl.engine().getSSLParameters();
              parameters.setEndpointIdentificationAlgorithm("HTTPS");
              ssl.engine().setSSLParameters(parameters);
              channel.pipeline().addLast(ssl);
            }
            channel.pipeline().addLast(handler);
          }
        })
        .connect(address);
    future.addListener(f -> {
      reconnecting = false;
      if (!f.isSuccess()) {
        failParked();
      }
    });
    return future;
  }

  /** Event loop only: {@code call} waits for the connection being made. */
  private void park(Call call) {
    if (parked.size() >= MAX_PARKED) {
      finish(call, UNAVAILABLE, null, null);
    } else {
      parked.add(call);
    }
  }

  /** Event loop only: the waiting calls fail, their connection having failed. */
  private void failParked() {
    for (Call call; (call = parked.poll()) != null; ) {
      finish(call, UNAVAILABLE, null, null);
    }
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
    if (handler == null || !handler.open()) {
      if (reconnecting) {
        // A new connection is on its way (after a GOAWAY, or a retry): the call waits for it.
        park(call);
        return;
      }
      if (System.nanoTime() - nextConnectNanos >= 0) {
        reconnect();
      }
      finish(call, UNAVAILABLE, null, null);
      return;
    }
    if (handler.calls.size() >= handler.maxConcurrent) {
      // As many calls in flight on this connection as the server's SETTINGS allow.
      finish(call, STREAM_LIMIT, null, null);
      return;
    }
    handler.start(call);
  }

  /**
   * Event loop only: sends what {@link #write} wrote since the last flush. Not before the
   * connection is made: a flush then would reach TLS's {@code SslHandler} before its channel is
   * active, make its engine produce the ClientHello into a channel that cannot send it (dropped),
   * and leave the handshake waiting for an answer to a hello never sent. What the calls wrote
   * meanwhile goes out with the preface ({@code channelActive}).
   */
  void flush() {
    Handler handler = current;
    if (handler != null && handler.ctx != null && handler.ctx.channel().isActive()) {
      handler.flushNow();
    }
  }

  /** Ends {@code call} with {@code code}, once; releases what it held. */
  private static void finish(Call call, int code, Http2Headers trailers, Object read) {
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

  /** Netty's HPACK decoder, decoding every header block of a connection into one reused map. */
  private static final class ReusingDecoder extends DefaultHttp2HeadersDecoder {
    private final DefaultHttp2Headers reused = new DefaultHttp2Headers(false);

    ReusingDecoder() {
      // No validation (the answer is only read for a few headers), and no limit on the list's
      // size below 1 MB: this client announces none, so the server may send any.
      super(false, MAX_HEADER_BLOCK);
    }

    @Override
    protected Http2Headers newHeaders() {
      reused.clear();
      return reused;
    }
  }

  /** A violation of HTTP/2 by the server: the connection is closed. */
  private static final class ProtocolError extends Exception {
    ProtocolError(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * One TCP connection: its HTTP/2 framing, streams, windows and header compression. Event loop
   * only.
   */
  private final class Handler extends ByteToMessageDecoder {
    private ChannelHandlerContext ctx;
    /** Calls sent and not answered, by stream id. */
    private final IntObjectMap<Call> calls = new IntObjectHashMap<>();
    /** Calls with message bytes held back by a flow-control window, oldest first. */
    private final ArrayDeque<Call> waiting = new ArrayDeque<>();
    private final DefaultHttp2HeadersEncoder encoder = new DefaultHttp2HeadersEncoder();
    private final ReusingDecoder decoder = new ReusingDecoder();
    /** The request's header block once it no longer changes; the last one encoded until then. */
    private byte[] steadyBlock;
    private byte[] lastBlock;
    /** A header block being received (HEADERS, then CONTINUATION until END_HEADERS). */
    private final ByteBuf block = Unpooled.buffer(256);
    private int blockStream;
    private boolean blockEndsStream;
    private boolean inBlock;
    /** Frames written since the last flush, gathered into one buffer; null when none. */
    private ByteBuf pending;
    private boolean prefaceSent;
    /** Whether a read is under way (its completion flushes what was written meanwhile). */
    private boolean reading;
    private int nextStreamId = 1;
    private boolean goAway;
    // What the server's SETTINGS allow.
    private long maxConcurrent = Long.MAX_VALUE;
    private long initialWindow = DEFAULT_WINDOW;
    private int maxFrame = DEFAULT_MAX_FRAME;
    /** What the server's connection window allows this client to send now. */
    private long connectionWindow = DEFAULT_WINDOW;
    /** Bytes received on the connection and not yet returned to the server. */
    private int unreturned;

    /** Whether new calls can go on this connection. */
    boolean open() {
      // nextStreamId turns negative once stream ids are used up.
      return ctx != null && prefaceSent && !goAway && nextStreamId > 0 && ctx.channel().isActive();
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) throws Exception {
      this.ctx = ctx;
      super.handlerAdded(ctx);
    }

    @Override
    protected void handlerRemoved0(ChannelHandlerContext ctx) {
      if (pending != null) {
        pending.release();
        pending = null;
      }
      block.release();
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) throws Exception {
      ByteBuf out = out();
      out.writeBytes(PREFACE);
      frameHeader(out, 12, SETTINGS, 0, 0);
      out.writeShort(ENABLE_PUSH).writeInt(0);
      out.writeShort(INITIAL_WINDOW_SIZE).writeInt(STREAM_WINDOW);
      // A large connection window, so that many answers in flight are never held by flow control.
      windowUpdate(0, CONNECTION_WINDOW - DEFAULT_WINDOW);
      prefaceSent = true;
      if (this == current) {
        // The calls that waited for this connection go out with its preface.
        for (Call call; open() && (call = parked.poll()) != null; ) {
          if (!call.done) {
            start(call);
          }
        }
      }
      flushNow();
      super.channelActive(ctx);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
      reading = true;
      super.channelRead(ctx, msg);
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) throws Exception {
      reading = false;
      flushNow();
      super.channelReadComplete(ctx);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
      super.channelInactive(ctx);
      failAll(UNAVAILABLE);
      // While the next connection's destination is looked up this one is still current; the calls
      // waiting for the next one go on waiting.
      if (this == current && !reconnecting) {
        failParked();
      }
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      ctx.close();
    }

    /** Every call still open ends with {@code code} (cut off before its trailers). */
    private void failAll(int code) {
      waiting.clear();
      if (calls.isEmpty()) {
        return;
      }
      List<Call> left = new ArrayList<>(calls.values());
      calls.clear();
      for (Call call : left) {
        finish(call, code, null, null);
      }
    }

    /** Opens a stream for {@code call} and writes its headers and as much of its message as the windows allow (not flushed). */
    void start(Call call) {
      int id = nextStreamId;
      nextStreamId += 2;
      call.streamId = id;
      call.window = initialWindow;
      calls.put(id, call);
      try {
        writeHeaders(id);
      } catch (Http2Exception e) {
        calls.remove(id);
        finish(call, INTERNAL, null, null);
        ctx.close();
        return;
      }
      writeData(call);
    }

    private void writeHeaders(int id) throws Http2Exception {
      byte[] encoded = steadyBlock;
      if (encoded == null) {
        ByteBuf buf = Unpooled.buffer(256);
        encoder.encodeHeaders(id, headers, buf);
        encoded = new byte[buf.readableBytes()];
        buf.readBytes(encoded);
        if (Arrays.equals(lastBlock, encoded)) {
          steadyBlock = encoded;
        }
        lastBlock = encoded;
      }
      ByteBuf out = out();
      int first = Math.min(encoded.length, maxFrame);
      frameHeader(out, first, HEADERS, first == encoded.length ? END_HEADERS : 0, id);
      out.writeBytes(encoded, 0, first);
      for (int at = first; at < encoded.length; ) {
        int part = Math.min(encoded.length - at, maxFrame);
        frameHeader(out, part, CONTINUATION, at + part == encoded.length ? END_HEADERS : 0, id);
        out.writeBytes(encoded, at, part);
        at += part;
      }
    }

    /** Writes what the windows allow of {@code call}'s message; the rest waits for a WINDOW_UPDATE. */
    private void writeData(Call call) {
      ByteBuf message = call.message;
      int total = message.readableBytes();
      while (call.sent < total) {
        int part = (int) Math.min(Math.min(call.window, connectionWindow), Math.min(maxFrame, total - call.sent));
        if (part <= 0) {
          if (!call.waitingForWindow) {
            call.waitingForWindow = true;
            waiting.add(call);
          }
          return;
        }
        boolean last = call.sent + part == total;
        ByteBuf out = out();
        frameHeader(out, part, DATA, last ? END_STREAM : 0, call.streamId);
        if (part <= COPY_LIMIT) {
          out.writeBytes(message, message.readerIndex() + call.sent, part);
        } else {
          writePending();
          ctx.write(message.retainedSlice(message.readerIndex() + call.sent, part), ctx.voidPromise());
        }
        call.sent += part;
        call.window -= part;
        connectionWindow -= part;
      }
    }

    /** Writes the messages held back by the windows, as far as the windows now allow, oldest first. */
    private void writeWaiting() {
      for (int n = waiting.size(); n > 0; n--) {
        Call call = waiting.poll();
        call.waitingForWindow = false;
        if (!call.done) {
          writeData(call);
        }
      }
    }

    private ByteBuf out() {
      if (pending == null) {
        pending = ctx.alloc().directBuffer(8192);
      }
      return pending;
    }

    private void writePending() {
      if (pending != null) {
        ctx.write(pending, ctx.voidPromise());
        pending = null;
      }
    }

    void flushNow() {
      writePending();
      ctx.flush();
    }

    private void frameHeader(ByteBuf out, int length, int type, int flags, int stream) {
      out.writeMedium(length).writeByte(type).writeByte(flags).writeInt(stream);
    }

    private void windowUpdate(int stream, int increment) {
      frameHeader(out(), 4, WINDOW_UPDATE, 0, stream);
      pending.writeInt(increment);
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> unused) {
      try {
        while (in.readableBytes() >= 9 && ctx.channel().isActive()) {
          int at = in.readerIndex();
          int length = in.getUnsignedMedium(at);
          if (length > DEFAULT_MAX_FRAME) {
            // This client never raises SETTINGS_MAX_FRAME_SIZE.
            throw new ProtocolError("a frame of " + length + " bytes");
          }
          if (in.readableBytes() < 9 + length) {
            return;
          }
          int type = in.getUnsignedByte(at + 3);
          int flags = in.getUnsignedByte(at + 4);
          int stream = in.getInt(at + 5) & 0x7fffffff;
          in.skipBytes(9 + length);
          frame(in, at + 9, length, type, flags, stream);
        }
      } catch (ProtocolError | Http2Exception e) {
        in.skipBytes(in.readableBytes());
        failAll(UNAVAILABLE);
        ctx.close();
      }
    }

    private void frame(ByteBuf in, int at, int length, int type, int flags, int stream) throws ProtocolError, Http2Exception {
      if (inBlock && type != CONTINUATION) {
        throw new ProtocolError("a header block interrupted");
      }
      switch (type) {
        case DATA -> data(in, at, length, flags, stream);
        case HEADERS -> {
          int start = at;
          int end = at + length;
          if ((flags & PADDED) != 0) {
            end -= length > 0 ? in.getUnsignedByte(start++) : 0;
          }
          if ((flags & PRIORITY) != 0) {
            start += 5;
          }
          if (end < start) {
            throw new ProtocolError("HEADERS padding beyond its frame");
          }
          block.clear().writeBytes(in, start, end - start);
          blockStream = stream;
          blockEndsStream = (flags & END_STREAM) != 0;
          inBlock = (flags & END_HEADERS) == 0;
          if (!inBlock) {
            headers();
          }
        }
        case CONTINUATION -> {
          if (!inBlock || stream != blockStream) {
            throw new ProtocolError("CONTINUATION without its HEADERS");
          }
          if (block.readableBytes() + length > MAX_HEADER_BLOCK) {
            throw new ProtocolError("a header block of more than " + MAX_HEADER_BLOCK + " bytes");
          }
          block.writeBytes(in, at, length);
          inBlock = (flags & END_HEADERS) == 0;
          if (!inBlock) {
            headers();
          }
        }
        case RST_STREAM -> {
          Call call = calls.remove(stream);
          if (call != null) {
            long error = in.getUnsignedInt(at);
            finish(call, error == CANCEL ? CANCELLED : error == REFUSED_STREAM ? UNAVAILABLE : INTERNAL, null, null);
            closeIfDrained();
          }
        }
        case SETTINGS -> {
          if ((flags & ACK) == 0) {
            settings(in, at, length);
          }
        }
        case PING -> {
          if ((flags & ACK) == 0) {
            // Sent as this read completes, with everything else it wrote.
            frameHeader(out(), 8, PING, ACK, 0);
            pending.writeBytes(in, at, 8);
          }
        }
        case GOAWAY -> goAway((int) (in.getUnsignedInt(at) & 0x7fffffff));
        case WINDOW_UPDATE -> {
          long increment = in.getUnsignedInt(at) & 0x7fffffff;
          if (stream == 0) {
            connectionWindow += increment;
          } else {
            Call call = calls.get(stream);
            if (call != null) {
              call.window += increment;
            }
          }
          writeWaiting();
        }
        case PUSH_PROMISE -> throw new ProtocolError("PUSH_PROMISE, though push is disabled");
        default -> {
          // PRIORITY and unknown frame types are ignored (RFC 9113, 4.1 and 5.3.2).
        }
      }
    }

    private void data(ByteBuf in, int at, int length, int flags, int stream) throws ProtocolError {
      int start = at;
      int end = at + length;
      if ((flags & PADDED) != 0 && length > 0) {
        end -= in.getUnsignedByte(start++);
        if (end < start) {
          throw new ProtocolError("DATA padding beyond its frame");
        }
      }
      // The whole frame counts against the windows, padding included.
      unreturned += length;
      if (unreturned >= CONNECTION_WINDOW / 2) {
        windowUpdate(0, unreturned);
        unreturned = 0;
      }
      Call call = calls.get(stream);
      if (call == null) {
        return;
      }
      take(call, in, start, end - start);
      if ((flags & END_STREAM) != 0) {
        // A body without trailers: gRPC requires them.
        calls.remove(stream);
        finish(call, INTERNAL, null, null);
        return;
      }
      call.unreturned += length;
      if (call.unreturned >= STREAM_WINDOW / 2) {
        windowUpdate(stream, call.unreturned);
        call.unreturned = 0;
      }
    }

    /** Takes {@code length} bytes of {@code call}'s answer: read in place when they hold its whole message, else gathered. */
    private void take(Call call, ByteBuf in, int at, int length) {
      if (length == 0 || call.read) {
        return;
      }
      if (call.body == null && readIfWhole(call, in, at, length)) {
        return;
      }
      if (call.body == null) {
        call.body = ctx.alloc().heapBuffer(Math.max(length, 256));
      }
      call.body.writeBytes(in, at, length);
      readIfWhole(call, call.body, call.body.readerIndex(), call.body.readableBytes());
    }

    /** Reads the message in {@code length} bytes of {@code buf} from {@code at} if they hold all of it. */
    private boolean readIfWhole(Call call, ByteBuf buf, int at, int length) {
      if (length < 5) {
        return false;
      }
      int size = buf.getInt(at + 1);
      if (size < 0 || size > length - 5) {
        return false;
      }
      read(call, buf.slice(at + 5, size));
      return true;
    }

    private void read(Call call, ByteBuf message) {
      call.read = true;
      try {
        call.readResult = call.reader.read(message);
      } catch (RuntimeException e) {
        call.unreadable = true;
      }
    }

    /** A whole header block arrived: decoded (always, to keep HPACK's table in step), then applied to its call. */
    private void headers() throws Http2Exception {
      Http2Headers answer = decoder.decodeHeaders(blockStream, block);
      Call call = calls.get(blockStream);
      if (call == null) {
        return;
      }
      CharSequence status = answer.get(GRPC_STATUS);
      if (!blockEndsStream) {
        // The answer's leading headers: an HTTP error without a gRPC status ends the call now.
        CharSequence http = answer.status();
        if (status == null && http != null && !AsciiString.contentEquals(http, "200")) {
          calls.remove(blockStream);
          finish(call, statusOfHttp(parseIntOr(http, 0)), answer, null);
          closeIfDrained();
        }
        return;
      }
      calls.remove(blockStream);
      int code;
      if (status != null) {
        code = parseIntOr(status, UNKNOWN);
      } else {
        // Trailers without a gRPC status, or a headers-only HTTP error.
        int http = parseIntOr(answer.status(), 200);
        code = http == 200 ? INTERNAL : statusOfHttp(http);
      }
      Object result = null;
      if (code == 0) {
        if (!call.read) {
          ByteBuf body = call.body;
          read(call, body == null || body.readableBytes() < 5 ? Unpooled.EMPTY_BUFFER
              : body.slice(body.readerIndex() + 5, Math.min(body.getInt(body.readerIndex() + 1), body.readableBytes() - 5)));
        }
        if (call.unreadable) {
          code = UNREADABLE;
        } else {
          result = call.readResult;
        }
      }
      finish(call, code, answer, result);
      closeIfDrained();
    }

    /** A connection the server is going away from closes once its last call is answered. */
    private void closeIfDrained() {
      if (goAway && calls.isEmpty()) {
        ctx.close();
      }
    }

    private void settings(ByteBuf in, int at, int length) throws ProtocolError, Http2Exception {
      if (length % 6 != 0) {
        throw new ProtocolError("SETTINGS of " + length + " bytes");
      }
      for (int i = at; i < at + length; i += 6) {
        int id = in.getUnsignedShort(i);
        long value = in.getUnsignedInt(i + 2);
        switch (id) {
          case HEADER_TABLE_SIZE -> {
            // The encoder signals the new size in its next block; encode again until steady.
            encoder.maxHeaderTableSize(value);
            steadyBlock = null;
            lastBlock = null;
          }
          case MAX_CONCURRENT_STREAMS -> maxConcurrent = value;
          case INITIAL_WINDOW_SIZE -> {
            long delta = value - initialWindow;
            initialWindow = value;
            for (Call call : calls.values()) {
              call.window += delta;
            }
          }
          case MAX_FRAME_SIZE -> maxFrame = (int) Math.min(value, (1 << 24) - 1);
          default -> {
            // Others (push, header list size) do not change what this client sends.
          }
        }
      }
      frameHeader(out(), 0, SETTINGS, ACK, 0);
      writeWaiting();
    }

    /**
     * The server takes no new stream, and none above {@code last}: a new connection is opened at
     * once (new calls wait for it), the calls above {@code last}, which the server never saw, go
     * out again on it (once), and the rest may still be answered here.
     */
    private void goAway(int last) {
      boolean first = !goAway;
      goAway = true;
      if (first && this == current && !closed) {
        reconnect();
      }
      List<Call> refused = new ArrayList<>();
      for (IntObjectMap.PrimitiveEntry<Call> entry : calls.entries()) {
        if (entry.key() > last) {
          refused.add(entry.value());
        }
      }
      for (Call call : refused) {
        calls.remove(call.streamId);
        if (call.waitingForWindow) {
          waiting.remove(call);
        }
        if (call.retried || call.done) {
          finish(call, UNAVAILABLE, null, null);
        } else {
          call.retried = true;
          call.restart();
          write(call);
        }
      }
      flush();
      closeIfDrained();
    }
  }

  private static int parseIntOr(CharSequence text, int otherwise) {
    if (text == null) {
      return otherwise;
    }
    try {
      return text instanceof AsciiString ascii ? ascii.parseInt() : Integer.parseInt(text.toString());
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
