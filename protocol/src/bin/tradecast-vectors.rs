//! `tradecast-vectors`: prints the test vectors of one record version (`v1` or `v2`).
//!
//! `cargo run -p tradecast-protocol --bin tradecast-vectors -- v1 > protocol/tests/vectors/v1.json`
//! `cargo run -p tradecast-protocol --bin tradecast-vectors -- v2 > protocol/tests/vectors/v2.json`

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("v1") => print!("{}", tradecast_protocol::vectors::generate_text()),
        Some("v2") => print!("{}", tradecast_protocol::vectors::v2::generate_text()),
        _ => {
            eprintln!("usage: tradecast-vectors v1|v2");
            return std::process::ExitCode::from(2);
        }
    }
    std::process::ExitCode::SUCCESS
}
