//! A TCP forwarder to put between a client and a server, to cut the network between them.
//!
//! For servers a test cannot stop without losing their state (moto keeps everything in
//! memory): [`Proxy::cut`] closes every connection through it and refuses new ones, as a
//! network partition or a dead load balancer would; [`Proxy::restore`] accepts again on
//! the same port.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tidings_testkit::proxy::Proxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = Proxy::start(server.local_addr()?).await?;
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = server.accept().await {
//!         let _ = socket.write_all(b"hello").await;
//!     }
//! });
//!
//! let mut greeting = String::new();
//! tokio::net::TcpStream::connect(proxy.addr()).await?.read_to_string(&mut greeting).await?;
//! assert_eq!(greeting, "hello");
//!
//! proxy.cut().await;
//! assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
//! proxy.restore().await?;
//! assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_ok());
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// A forwarder from a loopback port to `upstream`. Stops forwarding when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accepting task (which owns the connections' tasks), while not cut.
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Proxy {
    /// Forwards a new loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Self {
            addr: listener.local_addr()?,
            upstream,
            tasks: Mutex::new(None),
        };
        proxy.serve(listener).await;
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for clients configured by URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub async fn cut(&self) {
        if let Some(mut tasks) = self.tasks.lock().await.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Accepts again, on the same port. Does nothing when not cut.
    pub async fn restore(&self) -> std::io::Result<()> {
        if self.tasks.lock().await.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener).await;
        Ok(())
    }

    async fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Aborting this task drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(client, upstream));
                while connections.try_join_next().is_some() {}
            }
        });
        *self.tasks.lock().await = Some(tasks);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
