//! Any CNXN banner parses without panicking; a device banner rebuilt from what was parsed
//! parses back to the same fields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::banner::Banner;

fuzz_target!(|data: &[u8]| {
    let b = Banner::parse(data);
    let (Some(p), Some(m), Some(d)) = (&b.product, &b.model, &b.device) else {
        return;
    };
    // Rebuilding is only defined for values the format can carry.
    let clean = |s: &str| !s.contains(['\0', ';']);
    if ![p, m, d].iter().all(|s| clean(s)) || !b.features.iter().all(|f| clean(f)) {
        return;
    }
    let features: Vec<&str> = b.features.iter().map(String::as_str).collect();
    let again = Banner::parse(Banner::device(p, m, d, &features).as_bytes());
    assert_eq!(again.product, b.product);
    assert_eq!(again.model, b.model);
    assert_eq!(again.device, b.device);
    assert_eq!(again.features, b.features);
});
