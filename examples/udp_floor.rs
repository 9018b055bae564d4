//! The floor of the DNS benchmark (`bench/dns/run`): the least a UDP DNS server can do.
//!
//! It receives a datagram, sets the QR (response) bit in the header and sends the same
//! bytes back; nothing is parsed, looked up or allocated per packet. Its server CPU per
//! query is the kernel's per-packet cost plus two syscalls, so `muster / floor` in the
//! benchmark's table shows how much of muster's cost is its own work.
//!
//!     cargo build --release --example udp_floor
//!     target/release/examples/udp_floor 127.0.0.1:5300
//!
//! One thread, blocking I/O, std only. It serves until it is killed; the benchmark
//! pins it to a core with `taskset` like the real servers.

use std::net::UdpSocket;
use std::process::ExitCode;

/// The QR bit: the top bit of the header's third byte.
const QR: u8 = 0x80;
/// Bytes of a DNS header; shorter datagrams are not DNS and are dropped.
const HEADER_LEN: usize = 12;

fn main() -> ExitCode {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5300".to_owned());
    let socket = match UdpSocket::bind(&address) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("udp_floor: cannot bind {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match socket.local_addr() {
        Ok(bound) => println!("udp_floor: echoing on {bound}"),
        Err(error) => eprintln!("udp_floor: {error}"),
    }
    let mut buffer = [0u8; 65_535];
    loop {
        // Errors (a client's ICMP unreachable, a full send buffer) drop one packet, as a
        // real server would; they never stop the loop.
        let Ok((len, peer)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if len < HEADER_LEN {
            continue;
        }
        buffer[2] |= QR;
        let _ = socket.send_to(&buffer[..len], peer);
    }
}
