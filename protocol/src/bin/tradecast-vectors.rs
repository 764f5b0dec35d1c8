//! `tradecast-vectors`: prints the v1 test vectors.
//!
//! `cargo run -p tradecast-protocol --bin tradecast-vectors > protocol/tests/vectors/v1.json`

fn main() {
    print!("{}", tradecast_protocol::vectors::generate_text());
}
