//! Sizing the QUIC socket's receive buffer: a burst from thousands of agents
//! overflows the usual OS default, and every dropped packet stalls a
//! connection for a retransmission timeout.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

fn set(socket: &UdpSocket, option: libc::c_int, bytes: usize) -> bool {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor and a pointer to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// The socket's receive buffer in bytes, as the kernel reports it.
pub fn receive_buffer(socket: &UdpSocket) -> Option<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor and pointers to a live c_int and its length.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(value).unwrap_or(0))
}

/// Requests `bytes` of receive buffer (0: leave the default); returns the size
/// in force. The kernel caps the request at `net.core.rmem_max` unless the
/// process may override it (CAP_NET_ADMIN), which is tried first.
pub fn grow_receive_buffer(socket: &UdpSocket, bytes: usize) -> Option<usize> {
    if bytes > 0 && !set(socket, libc::SO_RCVBUFFORCE, bytes) {
        set(socket, libc::SO_RCVBUF, bytes);
    }
    receive_buffer(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_beyond_the_default() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = receive_buffer(&socket).unwrap();
        let after = grow_receive_buffer(&socket, before * 4).unwrap();
        // Linux doubles the request for bookkeeping; capped runs still grow or stay.
        assert!(after >= before, "{before} -> {after}");
        assert_eq!(grow_receive_buffer(&socket, 0), Some(after));
    }
}
