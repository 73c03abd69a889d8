//! The `vc-agent` command line, as a process.

use std::process::Command;

/// `--ca` naming a file that does not exist fails at once (before any connection) with a message
/// naming the file.
#[test]
fn run_with_a_missing_ca_file_fails_clearly() {
    let dir = std::env::temp_dir().join(format!("vc-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("agent.key");
    let keygen = Command::new(env!("CARGO_BIN_EXE_vc-agent"))
        .args(["keygen", "--force", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let missing = dir.join("missing.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_vc-agent"))
        .args(["run", "--edge", "wss://127.0.0.1:9/ws", "--key"])
        .arg(&key)
        .arg("--ca")
        .arg(&missing)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("vc-agent: CA file") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}
