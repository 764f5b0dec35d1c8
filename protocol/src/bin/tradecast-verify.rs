//! `tradecast-verify`: checks a provider's exported track record offline, trusting nobody.
//!
//! `tradecast-verify EXPORT.json [--hub-key HEX]`: checks every record's signature, `seq` and
//! previous hash, every receipt against the hub's key (the export's, or the one given), then
//! recomputes every figure from the records and prints them beside the export's. Exit 0 when all
//! is equal, 1 naming the first difference, 2 for a usage or file error. Depends on the protocol
//! crate only.

use std::io::Read as _;
use std::process::ExitCode;

use tradecast_protocol::IdentityKey;
use tradecast_protocol::track::verifier_report;

/// Larger export files are refused before they are read whole.
const MAX_EXPORT_BYTES: u64 = 512 * 1024 * 1024;

const USAGE: &str = "usage: tradecast-verify EXPORT.json [--hub-key HEX]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut file = None;
    let mut pin = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--hub-key" => {
                let Some(hex) = it.next() else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                match IdentityKey::from_hex(hex) {
                    Ok(k) => pin = Some(k),
                    Err(e) => {
                        eprintln!("--hub-key: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            path if file.is_none() => file = Some(path.to_string()),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = file else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_EXPORT_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        eprintln!("{path}: {e}");
        return ExitCode::from(2);
    }
    if bytes.len() as u64 > MAX_EXPORT_BYTES {
        eprintln!("{path}: larger than {MAX_EXPORT_BYTES} bytes");
        return ExitCode::from(2);
    }
    let report = verifier_report(&bytes, pin.as_ref());
    print!("{}", report.text);
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
