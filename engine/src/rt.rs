//! The runtime seam: the only place in the engine and the broker that names an async runtime
//! for executors, tasks, timers and sockets (the storage backends in [`crate::storage`] name
//! their own I/O paths).
//!
//! Two runtimes sit behind it, one per process thread, chosen when the executor starts:
//!
//! | runtime | executor | sockets and timers | storage it carries |
//! |---|---|---|---|
//! | [`Runtime::Glommio`] | glommio `LocalExecutor` | glommio (io_uring) | `glommio` DMA files |
//! | [`Runtime::Poll`] | `async-executor` `LocalExecutor` | `async-io` (epoll) | `uring`, `pwrite` |
//!
//! glommio's executors need io_uring to start, so where io_uring is denied (Docker's default
//! seccomp profile) only the poll runtime runs. It is the smol project's executor and reactor:
//! small, maintained, and built on the same `futures` I/O traits the broker's connection code
//! already uses, so a connection is the same code on both runtimes. (compio, the other
//! candidate, hands owned buffers to completion-based I/O: it would need a second connection
//! layer, not just a second constructor.)
//!
//! Everything here dispatches on the runtime of the calling thread, recorded when its executor
//! starts ([`spawn_executor`]). Calling a runtime function on a thread without an executor is
//! a programming error and panics with a message saying so.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::io::{AsyncRead, AsyncWrite};

/// The async runtime of an executor thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// glommio: io_uring for files, sockets and timers.
    Glommio,
    /// async-executor with the async-io reactor (epoll): no io_uring needed.
    Poll,
}

thread_local! {
    static CURRENT: Cell<Option<Runtime>> = const { Cell::new(None) };
    static POLL_EXECUTOR: async_executor::LocalExecutor<'static> =
        const { async_executor::LocalExecutor::new() };
}

/// The runtime of the calling thread's executor.
///
/// # Panics
/// On a thread that no executor of [`spawn_executor`] runs.
#[must_use]
pub fn current() -> Runtime {
    CURRENT
        .with(Cell::get)
        .expect("keel_engine::rt used outside an executor thread (see rt::spawn_executor)")
}

/// Whether io_uring can be set up in this process: a ring of four entries is made and dropped.
/// Where a seccomp filter, a sysctl (`kernel.io_uring_disabled`) or an old kernel refuses it,
/// the error says why.
///
/// # Errors
/// The error of `io_uring_setup`.
pub fn probe_io_uring() -> io::Result<()> {
    io_uring::IoUring::new(4).map(drop)
}

/// How an executor thread is set up.
#[derive(Clone, Debug)]
pub struct ExecutorSpec {
    /// The thread's name.
    pub name: String,
    /// The CPU to pin the thread to, if any.
    pub cpu: Option<usize>,
    /// glommio only: the io memory registered with its rings.
    pub io_memory_bytes: usize,
    /// glommio only: the depth of its rings.
    pub ring_depth: usize,
}

/// A running executor thread; [`ExecutorHandle::join`] waits for its main future's result.
#[derive(Debug)]
pub struct ExecutorHandle<T: Send + 'static>(HandleInner<T>);

#[derive(Debug)]
enum HandleInner<T: Send + 'static> {
    Glommio(glommio::ExecutorJoinHandle<T>),
    Poll(std::thread::JoinHandle<T>),
}

impl<T: Send + 'static> ExecutorHandle<T> {
    /// Waits for the executor's main future to finish.
    ///
    /// # Errors
    /// The executor thread panicked or could not run.
    pub fn join(self) -> io::Result<T> {
        match self.0 {
            HandleInner::Glommio(h) => h.join().map_err(|e| io::Error::other(e.to_string())),
            HandleInner::Poll(h) => h
                .join()
                .map_err(|_| io::Error::other("executor thread panicked")),
        }
    }
}

/// Starts an executor thread of `runtime` that runs the future `make` returns, and returns
/// its handle.
///
/// # Errors
/// The thread or the executor could not start (for glommio: io_uring cannot be set up).
pub fn spawn_executor<T, F, Fut>(
    runtime: Runtime,
    spec: &ExecutorSpec,
    make: F,
) -> io::Result<ExecutorHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    match runtime {
        Runtime::Glommio => {
            let placement = spec
                .cpu
                .map_or(glommio::Placement::Unbound, glommio::Placement::Fixed);
            glommio::LocalExecutorBuilder::new(placement)
                .name(&spec.name)
                .io_memory(spec.io_memory_bytes)
                .ring_depth(spec.ring_depth)
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(Runtime::Glommio)));
                    make()
                })
                .map(|h| ExecutorHandle(HandleInner::Glommio(h)))
                .map_err(|e| io::Error::other(e.to_string()))
        }
        Runtime::Poll => {
            let cpu = spec.cpu;
            std::thread::Builder::new()
                .name(spec.name.clone())
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu);
                    }
                    CURRENT.with(|c| c.set(Some(Runtime::Poll)));
                    POLL_EXECUTOR.with(|ex| async_io::block_on(ex.run(make())))
                })
                .map(|h| ExecutorHandle(HandleInner::Poll(h)))
        }
    }
}

/// Pins the calling thread to one CPU; a failure is logged (the shard still runs, unpinned).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it for any cpu below
    // CPU_SETSIZE (checked), and sched_setaffinity reads size_of::<cpu_set_t>() bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            -1
        } else {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
        }
    };
    if rc != 0 {
        tracing::warn!(cpu, error = %io::Error::last_os_error(), "cannot pin executor thread");
    }
}

/// A task spawned on the calling thread's executor; awaiting it gives its output, dropping it
/// cancels it, [`Task::detach`] lets it run on.
#[derive(Debug)]
#[must_use = "a dropped task is cancelled; detach it to let it run"]
pub struct Task<T>(TaskInner<T>);

#[derive(Debug)]
enum TaskInner<T> {
    Glommio(glommio::Task<T>),
    Poll(async_executor::Task<T>),
}

/// Spawns a future on the calling thread's executor.
///
/// # Panics
/// Outside an executor thread.
pub fn spawn_local<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    match current() {
        Runtime::Glommio => Task(TaskInner::Glommio(glommio::spawn_local(future))),
        Runtime::Poll => Task(TaskInner::Poll(POLL_EXECUTOR.with(|ex| ex.spawn(future)))),
    }
}

impl<T> Task<T> {
    /// Lets the task run on without its handle; the returned handle can still cancel it.
    pub fn detach(self) -> Detached<T> {
        match self.0 {
            TaskInner::Glommio(t) => Detached(DetachedInner::Glommio(t.detach())),
            TaskInner::Poll(t) => Detached(DetachedInner::Poll(Some(t))),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            TaskInner::Glommio(t) => Pin::new(t).poll(cx),
            TaskInner::Poll(t) => Pin::new(t).poll(cx),
        }
    }
}

/// A detached task: it runs on whether or not this handle is kept; [`Detached::cancel`] stops
/// it.
#[derive(Debug)]
pub struct Detached<T>(DetachedInner<T>);

#[derive(Debug)]
enum DetachedInner<T> {
    Glommio(glommio::task::JoinHandle<T>),
    // async-executor cancels a task when its handle drops, so the handle is kept here and
    // detached only when this is dropped.
    Poll(Option<async_executor::Task<T>>),
}

impl<T> Detached<T> {
    /// Cancels the task: it is not polled again.
    pub fn cancel(mut self) {
        match &mut self.0 {
            DetachedInner::Glommio(h) => h.cancel(),
            DetachedInner::Poll(t) => drop(t.take()),
        }
    }
}

impl<T> Drop for Detached<T> {
    fn drop(&mut self) {
        if let DetachedInner::Poll(t) = &mut self.0 {
            if let Some(t) = t.take() {
                t.detach();
            }
        }
    }
}

/// A timer future: ready once its duration has passed.
#[derive(Debug)]
#[must_use = "a timer does nothing unless awaited"]
pub struct Sleep(SleepInner);

#[derive(Debug)]
enum SleepInner {
    Glommio(glommio::timer::Timer),
    Poll(async_io::Timer),
}

/// Sleeps for `duration` on the calling thread's runtime.
///
/// # Panics
/// Outside an executor thread.
pub fn sleep(duration: Duration) -> Sleep {
    match current() {
        Runtime::Glommio => Sleep(SleepInner::Glommio(glommio::timer::Timer::new(duration))),
        Runtime::Poll => Sleep(SleepInner::Poll(async_io::Timer::after(duration))),
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            SleepInner::Glommio(t) => Pin::new(t).poll(cx).map(drop),
            SleepInner::Poll(t) => Pin::new(t).poll(cx).map(drop),
        }
    }
}

/// A listening TCP socket of the calling thread's runtime.
#[derive(Debug)]
pub enum TcpListener {
    /// glommio's.
    Glommio(glommio::net::TcpListener),
    /// async-io's.
    Poll(async_io::Async<std::net::TcpListener>),
}

impl TcpListener {
    /// Hands a bound, listening standard socket (with whatever options it was given) to the
    /// calling thread's runtime.
    ///
    /// # Errors
    /// The socket cannot be made non-blocking.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        match current() {
            Runtime::Glommio => {
                use std::os::fd::{FromRawFd, IntoRawFd};
                let fd = listener.into_raw_fd();
                // SAFETY: `fd` is a listening TCP socket that nothing else owns
                // (`into_raw_fd` gave up the standard library's ownership).
                Ok(TcpListener::Glommio(unsafe {
                    glommio::net::TcpListener::from_raw_fd(fd)
                }))
            }
            Runtime::Poll => Ok(TcpListener::Poll(async_io::Async::new(listener)?)),
        }
    }

    /// The next connection.
    ///
    /// # Errors
    /// The accept failed (out of file descriptors and the like).
    pub async fn accept(&self) -> io::Result<TcpStream> {
        match self {
            TcpListener::Glommio(l) => l
                .accept()
                .await
                .map(TcpStream::Glommio)
                .map_err(|e| io::Error::other(e.to_string())),
            TcpListener::Poll(l) => l.accept().await.map(|(s, _)| TcpStream::Poll(s)),
        }
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// As `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            TcpListener::Glommio(l) => l.local_addr().map_err(|e| io::Error::other(e.to_string())),
            TcpListener::Poll(l) => l.get_ref().local_addr(),
        }
    }
}

/// A connected TCP socket of either runtime; reads and writes through the `futures` I/O
/// traits.
#[derive(Debug)]
pub enum TcpStream {
    /// glommio's.
    Glommio(glommio::net::TcpStream),
    /// async-io's.
    Poll(async_io::Async<std::net::TcpStream>),
}

impl TcpStream {
    /// The peer's address.
    ///
    /// # Errors
    /// As `getpeername`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            TcpStream::Glommio(s) => s.peer_addr().map_err(|e| io::Error::other(e.to_string())),
            TcpStream::Poll(s) => s.get_ref().peer_addr(),
        }
    }

    /// Sets TCP_NODELAY.
    ///
    /// # Errors
    /// As `setsockopt`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            TcpStream::Glommio(s) => s
                .set_nodelay(on)
                .map_err(|e| io::Error::other(e.to_string())),
            TcpStream::Poll(s) => s.get_ref().set_nodelay(on),
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpStream::Glommio(s) => Pin::new(s).poll_read(cx, buf),
            TcpStream::Poll(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpStream::Glommio(s) => Pin::new(s).poll_write(cx, buf),
            TcpStream::Poll(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpStream::Glommio(s) => Pin::new(s).poll_flush(cx),
            TcpStream::Poll(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpStream::Glommio(s) => Pin::new(s).poll_close(cx),
            TcpStream::Poll(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// A budget of units (bytes of request memory, say) shared by the tasks of one thread.
/// Waiters are served first come, first served: a large request is not starved by a stream of
/// small ones. Runtime-agnostic: it only stores wakers.
#[derive(Debug)]
pub struct Budget {
    inner: RefCell<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    available: u64,
    total: u64,
    next_ticket: u64,
    /// Waiters in arrival order: (ticket, units, waker).
    queue: VecDeque<(u64, u64, Option<Waker>)>,
}

/// Units taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    budget: Rc<Budget>,
    units: u64,
}

impl Budget {
    /// A budget of `total` units.
    #[must_use]
    pub fn new(total: u64) -> Budget {
        Budget {
            inner: RefCell::new(BudgetInner {
                available: total,
                total,
                next_ticket: 0,
                queue: VecDeque::new(),
            }),
        }
    }

    /// The units not taken.
    #[must_use]
    pub fn available(&self) -> u64 {
        self.inner.borrow().available
    }

    /// Takes `units` (at most the whole budget: more is clamped to it), waiting behind earlier
    /// waiters until they are free. Cancel-safe: a dropped wait leaves the queue.
    pub async fn acquire(self: &Rc<Self>, units: u64) -> BudgetPermit {
        let units = units.min(self.inner.borrow().total);
        let ticket = {
            let mut inner = self.inner.borrow_mut();
            if inner.queue.is_empty() && inner.available >= units {
                inner.available -= units;
                return BudgetPermit {
                    budget: Rc::clone(self),
                    units,
                };
            }
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.queue.push_back((ticket, units, None));
            ticket
        };
        Acquire {
            budget: self,
            ticket,
            units,
            done: false,
        }
        .await
    }
}

impl Budget {
    /// Takes as much of `max` units as is free right now, if that is at least `min` and
    /// nobody waits (waiters keep their turn); `None` otherwise.
    #[must_use]
    pub fn try_acquire_up_to(self: &Rc<Self>, max: u64, min: u64) -> Option<BudgetPermit> {
        let mut inner = self.inner.borrow_mut();
        let min = min.min(inner.total);
        if !inner.queue.is_empty() || inner.available < min {
            return None;
        }
        let units = max.max(min).min(inner.available);
        inner.available -= units;
        Some(BudgetPermit {
            budget: Rc::clone(self),
            units,
        })
    }
}

impl BudgetPermit {
    /// The units this permit holds.
    #[must_use]
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Gives back the units past `units` (a permit never grows).
    pub fn shrink_to(&mut self, units: u64) {
        if units >= self.units {
            return;
        }
        let mut inner = self.budget.inner.borrow_mut();
        inner.available += self.units - units;
        self.units = units;
        debug_assert!(inner.available <= inner.total, "budget over-released");
        inner.wake_front();
    }
}

impl BudgetInner {
    fn wake_front(&mut self) {
        if let Some((_, units, waker)) = self.queue.front_mut() {
            if self.available >= *units {
                if let Some(w) = waker.take() {
                    w.wake();
                }
            }
        }
    }
}

struct Acquire<'a> {
    budget: &'a Rc<Budget>,
    ticket: u64,
    units: u64,
    done: bool,
}

impl Future for Acquire<'_> {
    type Output = BudgetPermit;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BudgetPermit> {
        let this = self.get_mut();
        let mut inner = this.budget.inner.borrow_mut();
        let front = inner.queue.front().map(|(t, _, _)| *t) == Some(this.ticket);
        if front && inner.available >= this.units {
            inner.queue.pop_front();
            inner.available -= this.units;
            // The next waiter may fit in what is left.
            inner.wake_front();
            this.done = true;
            return Poll::Ready(BudgetPermit {
                budget: Rc::clone(this.budget),
                units: this.units,
            });
        }
        if let Some(entry) = inner.queue.iter_mut().find(|(t, _, _)| *t == this.ticket) {
            entry.2 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.budget.inner.borrow_mut();
        inner.queue.retain(|(t, _, _)| *t != self.ticket);
        inner.wake_front();
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        let mut inner = self.budget.inner.borrow_mut();
        inner.available += self.units;
        debug_assert!(inner.available <= inner.total, "budget over-released");
        inner.wake_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{executor::LocalPool, task::LocalSpawnExt};

    #[test]
    fn budget_serves_waiters_in_order_and_survives_a_cancelled_wait() {
        let mut pool = LocalPool::new();
        let budget = Rc::new(Budget::new(10));
        let log = Rc::new(RefCell::new(Vec::new()));
        let first = futures::executor::block_on(budget.acquire(8));
        assert_eq!(budget.available(), 2);
        // A large waiter queues first; a small one behind it must not overtake it.
        for (name, units) in [("big", 9u64), ("small", 1)] {
            let (budget, log) = (Rc::clone(&budget), Rc::clone(&log));
            pool.spawner()
                .spawn_local(async move {
                    let p = budget.acquire(units).await;
                    log.borrow_mut().push(name);
                    drop(p);
                })
                .expect("spawn");
        }
        // A waiter that gives up leaves the queue without blocking the others.
        let cancelled = {
            let budget = Rc::clone(&budget);
            async move { budget.acquire(5).await }
        };
        let mut cancelled = Box::pin(cancelled);
        let waker = futures::task::noop_waker();
        assert!(cancelled
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        pool.run_until_stalled();
        assert!(
            log.borrow().is_empty(),
            "nothing fits while 8 units are taken"
        );
        drop(cancelled);
        drop(first);
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), vec!["big", "small"]);
        assert_eq!(budget.available(), 10);
        // Asking for more than the whole budget takes all of it.
        let all = futures::executor::block_on(budget.acquire(100));
        assert_eq!(budget.available(), 0);
        drop(all);
    }

    #[test]
    fn budget_takes_what_is_free_and_gives_back_what_a_permit_shrinks_by() {
        let budget = Rc::new(Budget::new(10));
        let mut a = budget.try_acquire_up_to(7, 2).expect("7 of 10 free");
        assert_eq!((a.units(), budget.available()), (7, 3));
        let b = budget
            .try_acquire_up_to(7, 2)
            .expect("3 free, at least 2 wanted");
        assert_eq!((b.units(), budget.available()), (3, 0));
        assert!(budget.try_acquire_up_to(7, 1).is_none(), "nothing free");
        a.shrink_to(4);
        assert_eq!((a.units(), budget.available()), (4, 3));
        a.shrink_to(9);
        assert_eq!(a.units(), 4, "a permit never grows");
        assert!(
            budget.try_acquire_up_to(7, 4).is_none(),
            "3 free, 4 wanted at least"
        );
        // A waiter keeps its turn: nothing is taken past it, even what would fit.
        let mut waiting = Box::pin(budget.acquire(5));
        let waker = futures::task::noop_waker();
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(
            budget.try_acquire_up_to(1, 1).is_none(),
            "a waiter is first"
        );
        drop(waiting);
        drop((a, b));
        assert_eq!(budget.available(), 10);
    }
}
