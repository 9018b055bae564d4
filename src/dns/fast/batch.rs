//! Datagrams in batches: one `recvmmsg` takes every query waiting on the socket (up to
//! [`BATCH`]), one `sendmmsg` sends their answers, so under load the per-syscall cost is
//! shared by many packets.
//!
//! Owns: the receive and reply buffers and the kernel's message headers. The only
//! `unsafe` of the fast path is here: two syscalls on buffers this module owns and
//! sizes, and reading the source addresses the kernel wrote.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams per syscall at most.
pub const BATCH: usize = 32;
/// Bytes of a query kept; longer datagrams are cut, as hickory's own UDP reader cuts them.
const MAX_QUERY: usize = 4096;

/// Queries received by one `recvmmsg`.
pub struct Received {
    buffers: Box<[[u8; MAX_QUERY]; BATCH]>,
    lens: [usize; BATCH],
    sources: [libc::sockaddr_storage; BATCH],
    source_lens: [libc::socklen_t; BATCH],
    count: usize,
}

impl Received {
    /// Buffers for [`BATCH`] queries, allocated once per thread.
    pub fn new() -> Self {
        Self {
            buffers: Box::new([[0; MAX_QUERY]; BATCH]),
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified)
            // address.
            sources: unsafe { zeroed() },
            source_lens: [0; BATCH],
            count: 0,
        }
    }

    /// Waits for a datagram (up to the socket's read timeout), then takes every one
    /// already queued behind it, up to [`BATCH`]; returns how many.
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain data; zeroes are valid before we fill them.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (n, (iovec, header)) in iovecs.iter_mut().zip(&mut headers).enumerate() {
            iovec.iov_base = self.buffers[n].as_mut_ptr().cast();
            iovec.iov_len = MAX_QUERY;
            header.msg_hdr.msg_name = (&raw mut self.sources[n]).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a buffer and an address slot of `self` that
        // lives through the call, with their true sizes; the kernel writes no further.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        self.count = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
        for (n, header) in headers.iter().take(self.count).enumerate() {
            self.lens[n] = (header.msg_len as usize).min(MAX_QUERY);
            self.source_lens[n] = header.msg_hdr.msg_namelen;
        }
        Ok(self.count)
    }

    /// The `n`th query received.
    pub fn query(&self, n: usize) -> &[u8] {
        &self.buffers[n][..self.lens[n]]
    }

    /// Where the `n`th query came from (`None` if not an IP address).
    pub fn source(&self, n: usize) -> Option<SocketAddr> {
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: the storage types are the same C struct; the kernel wrote a socket
        // address of `source_lens[n]` bytes into the source slot.
        let address = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.sources[n];
            SockAddr::new(storage, self.source_lens[n])
        };
        address.as_socket()
    }
}

/// Answers to send with one `sendmmsg`, each to the source of the query it answers.
pub struct Replies {
    buffers: Vec<Vec<u8>>,
    /// Which received query each pending reply answers.
    to: [usize; BATCH],
    count: usize,
}

impl Replies {
    /// Buffers for [`BATCH`] replies, allocated once per thread.
    pub fn new() -> Self {
        Self {
            buffers: (0..BATCH).map(|_| Vec::with_capacity(MAX_QUERY)).collect(),
            to: [0; BATCH],
            count: 0,
        }
    }

    /// The buffer for the next reply; [`Replies::push`] it once written.
    pub fn next_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffers[self.count]
    }

    /// Queues the buffer last returned by [`Replies::next_buffer`], for query `n`.
    pub fn push(&mut self, n: usize) {
        self.to[self.count] = n;
        self.count += 1;
    }

    /// Sends every queued reply. A reply the kernel refuses (a full buffer, a client
    /// gone) is dropped, as UDP may drop it anyway; the rest still go.
    pub fn send(&mut self, socket: &UdpSocket, received: &Received) {
        // SAFETY: plain data, filled below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (n, (iovec, header)) in iovecs
            .iter_mut()
            .zip(&mut headers)
            .take(self.count)
            .enumerate()
        {
            let query = self.to[n];
            iovec.iov_base = self.buffers[n].as_ptr().cast_mut().cast();
            iovec.iov_len = self.buffers[n].len();
            header.msg_hdr.msg_name = (&raw const received.sources[query]).cast_mut().cast();
            header.msg_hdr.msg_namelen = received.source_lens[query];
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < self.count {
            // SAFETY: headers `sent..count` point at reply buffers and source addresses
            // that live through the call; the kernel only reads them.
            let result = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[sent..].as_mut_ptr(),
                    (self.count - sent) as libc::c_uint,
                    0,
                )
            };
            match usize::try_from(result) {
                Ok(0) | Err(_) => sent += 1,
                Ok(n) => sent += n,
            }
        }
        self.count = 0;
    }
}
