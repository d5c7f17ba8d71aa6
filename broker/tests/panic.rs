//! A panic on a shard's executor thread ends the whole broker process (exit 101, the panic on
//! stderr) instead of leaving the other shards serving with calls to the dead one hanging.

use std::process::Command;
use std::time::Duration;

const CHILD: &str = "RILL_PANIC_TEST_CHILD";

#[test]
fn a_panic_on_an_executor_thread_ends_the_process() {
    if std::env::var_os(CHILD).is_some() {
        rill_broker::exit_on_panic();
        std::thread::spawn(|| {
            let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
            executor.run(async {
                glommio::spawn_local(async { panic!("shard task failed on purpose") }).await;
            });
        });
        // The healthy main thread would go on; the hook must end the process first.
        std::thread::sleep(Duration::from_secs(20));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "a_panic_on_an_executor_thread_ends_the_process", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "stderr: {stderr}");
    assert!(stderr.contains("shard task failed on purpose"), "stderr: {stderr}");
}
