package io.modelgate.gateway.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP relay on loopback that a test can cut (every connection closed, new ones refused) and
 * mend, to disconnect one replica from a shared server while the others stay connected.
 */
public final class TcpProxy implements AutoCloseable {
  private final int targetPort;
  private final int port;
  private final List<Socket> open = new CopyOnWriteArrayList<>();
  private volatile ServerSocket server;
  private volatile boolean closed;

  public TcpProxy(int targetPort) throws IOException {
    this.targetPort = targetPort;
    ServerSocket socket = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    this.port = socket.getLocalPort();
    listen(socket);
  }

  public int port() {
    return port;
  }

  private synchronized void listen(ServerSocket socket) {
    server = socket;
    Thread acceptor = new Thread(() -> {
      while (!socket.isClosed()) {
        try {
          Socket client = socket.accept();
          Socket upstream = new Socket(InetAddress.getLoopbackAddress(), targetPort);
          synchronized (this) {
            // A connection accepted while the proxy was being cut must not survive the cut.
            if (server != socket) {
              quietly(client);
              quietly(upstream);
              continue;
            }
            open.add(client);
            open.add(upstream);
          }
          pump(client, upstream);
          pump(upstream, client);
        } catch (IOException e) {
          // closed, or the target refused
        }
      }
    }, "tcp-proxy-accept");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  private void pump(Socket from, Socket to) {
    Thread t = new Thread(() -> {
      byte[] buffer = new byte[16384];
      try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
        int n;
        while ((n = in.read(buffer)) >= 0) {
          out.write(buffer, 0, n);
          out.flush();
        }
      } catch (IOException e) {
        // cut
      } finally {
        quietly(from);
        quietly(to);
      }
    }, "tcp-proxy-pump");
    t.setDaemon(true);
    t.start();
  }

  private static void quietly(Socket socket) {
    try {
      socket.close();
    } catch (IOException ignored) {
      // closing
    }
  }

  /** Closes every relayed connection and refuses new ones. */
  public synchronized void cut() throws IOException {
    ServerSocket listening = server;
    server = null;
    listening.close();
    for (Socket socket : open) {
      quietly(socket);
    }
    open.clear();
  }

  /** Accepts connections again, on the same port. */
  public void mend() throws IOException {
    if (!closed) {
      ServerSocket socket = new ServerSocket();
      socket.setReuseAddress(true);
      socket.bind(new java.net.InetSocketAddress(InetAddress.getLoopbackAddress(), port), 50);
      listen(socket);
    }
  }

  @Override
  public void close() throws IOException {
    closed = true;
    if (server != null) {
      cut();
    }
  }
}
