//! One UI step's CPU cost: parse a 200-node `uiautomator dump` into a tree and find a view by a
//! fallback list whose match is on the last alternative (both resource-ids miss, content-desc
//! `Like` hits the last node). Baselines: a bare quick-xml event scan of the same dump (no tree,
//! no attribute decoding), and the scan plus a raw attribute search for the same view.
//!
//! `cargo run --release -p phonefarm-flows --example ui_step_bench [iterations]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use phonefarm_flows::dump::parse_dump;
use phonefarm_flows::selector::{Fallbacks, Match, Selector};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

#[path = "../tests/it/synth.rs"]
mod synth;

fn stats(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let median = at(0.5);
    println!(
        "{name:<44} median {:>9.1} µs   p99 {:>9.1} µs   max {:>9.1} µs",
        median.as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
    );
    median
}

fn measure<T>(iterations: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    for _ in 0..iterations / 10 {
        black_box(f());
    }
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect()
}

/// Counts `<node>` elements with quick-xml, building nothing.
fn scan(xml: &str) -> usize {
    let mut reader = Reader::from_str(xml);
    let mut nodes = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().as_ref() == "node" => nodes += 1,
            Ok(Event::Eof) | Err(_) => return nodes,
            Ok(_) => {}
        }
    }
}

/// The scan plus a raw (undecoded) attribute search for `content-desc="Like"`.
fn scan_find(xml: &str) -> Option<usize> {
    let mut reader = Reader::from_str(xml);
    let mut nodes = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().as_ref() == "node" => {
                let hit = e
                    .attributes()
                    .flatten()
                    .any(|a| a.key.as_ref() == "content-desc" && a.value.as_ref() == "Like");
                if hit {
                    return Some(nodes);
                }
                nodes += 1;
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let xml = synth::screen(200);
    let like = Fallbacks::new(vec![
        Selector::resource_id("com.zhiliaoapp.musically:id/like_button"),
        Selector::resource_id("com.zhiliaoapp.musically:id/lk9"),
        Selector {
            clickable: Some(true),
            ..Selector::content_desc("Like")
        },
    ]);

    let tree = parse_dump(&xml).expect("synthetic dump parses");
    assert_eq!(tree.len(), 200);
    assert_eq!(
        like.find(&tree),
        Some(Match {
            node: 199,
            fallback: 2
        })
    );
    assert_eq!(scan(&xml), 200);
    assert_eq!(scan_find(&xml), Some(199));

    println!(
        "dump: 200 nodes, {} bytes; {iterations} iterations each",
        xml.len()
    );
    let step = stats(
        "ui step: parse tree + fallbacks (3rd hits)",
        measure(iterations, || {
            let tree = parse_dump(&xml).expect("parses");
            like.find(&tree)
        }),
    );
    stats(
        "  parse tree only",
        measure(iterations, || parse_dump(&xml).map(|t| t.len())),
    );
    stats(
        "  fallbacks only (tree already parsed)",
        measure(iterations, || like.find(&tree)),
    );
    stats(
        "baseline: quick-xml event scan",
        measure(iterations, || scan(&xml)),
    );
    stats(
        "baseline: event scan + raw attribute search",
        measure(iterations, || scan_find(&xml)),
    );
    let target = Duration::from_millis(2);
    println!(
        "target: median ui step < {:.1} ms: {}",
        target.as_secs_f64() * 1e3,
        if step < target { "met" } else { "NOT met" }
    );
}
