//! Large bodies stream through with bounded memory. In its own test binary so
//! no other test's allocations blur the process's peak RSS.

mod support;

use hyper::{Request, StatusCode};
use siesta_activator::index::FunctionConfig;
use support::*;

const SIZE: usize = 200 * 1024 * 1024;
/// Far below the body size: a buffered body anywhere would blow through it.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_and_download_stream_with_bounded_memory() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", FunctionConfig::default(), &[be]).await;
    let base = vm_kib("VmRSS");

    let req = Request::post(h.url("/count"))
        .header("host", "f.ns.siesta.local")
        .body(generated(SIZE))
        .unwrap();
    let (s, _, body) = send(req).await;
    assert_eq!((s, body), (StatusCode::OK, SIZE.to_string()));

    let resp = client()
        .request(get(&h, "f.ns.siesta.local", &format!("/stream/{SIZE}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut n = 0usize;
    while let Some(f) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(d) = f.unwrap().into_data() {
            n += d.len();
        }
    }
    assert_eq!(n, SIZE);
    let peak = vm_kib("VmHWM");
    eprintln!(
        "RSS before {base} KiB, peak {peak} KiB, after {} KiB",
        vm_kib("VmRSS")
    );
    assert!(
        peak.saturating_sub(base) < MAX_GROWTH_KIB,
        "peak RSS grew by {} KiB while streaming {} MiB",
        peak.saturating_sub(base),
        SIZE >> 20
    );
}
