//! Channels between tasks, on flume (whose wakers may cross threads: monoio's `sync`
//! feature lets a worker be woken from the control thread).

/// Between executors (threads).
pub mod shared {
    /// The sending end before it is `connect`ed on its executor.
    pub struct SharedSender<T>(flume::Sender<T>);
    /// The receiving end before it is `connect`ed on its executor.
    pub struct SharedReceiver<T>(flume::Receiver<T>);
    /// The sending end, on its executor.
    pub struct ConnectedSender<T>(flume::Sender<T>);
    /// The receiving end, on its executor.
    pub struct ConnectedReceiver<T>(flume::Receiver<T>);

    /// A channel of at most `n` messages in flight.
    pub fn new_bounded<T: Send>(n: usize) -> (SharedSender<T>, SharedReceiver<T>) {
        let (tx, rx) = flume::bounded(n);
        (SharedSender(tx), SharedReceiver(rx))
    }

    impl<T> SharedSender<T> {
        pub async fn connect(self) -> ConnectedSender<T> {
            ConnectedSender(self.0)
        }
    }

    impl<T> SharedReceiver<T> {
        pub async fn connect(self) -> ConnectedReceiver<T> {
            ConnectedReceiver(self.0)
        }
    }

    impl<T> ConnectedSender<T> {
        /// Waits for room; fails (giving the message back) once the receiver is gone.
        pub async fn send(&self, v: T) -> Result<(), flume::SendError<T>> {
            self.0.send_async(v).await
        }
    }

    impl<T> ConnectedReceiver<T> {
        /// The next message; `None` once every sender is gone.
        pub async fn recv(&self) -> Option<T> {
            self.0.recv_async().await.ok()
        }
    }
}

/// Between tasks of one executor.
pub mod local {
    /// The sending end.
    pub struct LocalSender<T>(flume::Sender<T>);
    /// The receiving end.
    pub struct LocalReceiver<T>(flume::Receiver<T>);

    /// A channel of at most `n` messages in flight.
    pub fn new_bounded<T>(n: usize) -> (LocalSender<T>, LocalReceiver<T>) {
        let (tx, rx) = flume::bounded(n);
        (LocalSender(tx), LocalReceiver(rx))
    }

    /// A channel without a bound.
    pub fn new_unbounded<T>() -> (LocalSender<T>, LocalReceiver<T>) {
        let (tx, rx) = flume::unbounded();
        (LocalSender(tx), LocalReceiver(rx))
    }

    impl<T> LocalSender<T> {
        /// Waits for room; fails once the receiver is gone.
        pub async fn send(&self, v: T) -> Result<(), flume::SendError<T>> {
            self.0.send_async(v).await
        }

        /// Sends if there is room now.
        pub fn try_send(&self, v: T) -> Result<(), flume::TrySendError<T>> {
            self.0.try_send(v)
        }
    }

    impl<T> LocalReceiver<T> {
        /// The next message; `None` once every sender is gone.
        pub async fn recv(&self) -> Option<T> {
            self.0.recv_async().await.ok()
        }
    }
}
