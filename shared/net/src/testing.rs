//! Test support for this crate's and its users' tests: a resolver with scripted answers, to play a DNS server
//! that answers one thing now and another at connect time.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::resolve::{Lookup, Lookups};

/// Answers each name from its script: the answers are given out in turn, the last one again
/// whenever the script is used up. A name without a script does not resolve.
#[derive(Debug, Default)]
pub struct ScriptedLookup {
    script: Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>,
    asked: Mutex<HashMap<String, usize>>,
}

impl ScriptedLookup {
    /// A resolver knowing no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts `host`: the first lookup gets `answers[0]`, the next `answers[1]`, …
    pub fn with(self, host: &str, answers: &[&[IpAddr]]) -> Self {
        let answers = answers.iter().map(|a| a.to_vec()).collect();
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_ascii_lowercase(), answers);
        self
    }

    /// How often `host` was looked up.
    pub fn lookups(&self, host: &str) -> usize {
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.get(&host.to_ascii_lowercase()).copied().unwrap_or(0)
    }
}

impl Lookup for ScriptedLookup {
    fn lookup(&self, host: &str) -> Lookups {
        let host = host.to_ascii_lowercase();
        *self
            .asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.clone())
            .or_default() += 1;
        let answer = {
            let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
            script.get_mut(&host).and_then(|answers| {
                if answers.len() > 1 {
                    answers.pop_front()
                } else {
                    answers.front().cloned()
                }
            })
        };
        Box::pin(async move {
            answer.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such name"))
            })
        })
    }
}
