//! A scripted [`BulkIo`] for tests: reads come from a script (data, zero-length packets,
//! timeouts, stalls, disconnect), writes are recorded transfer by transfer.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{BulkIo, UsbError};

/// One scripted read result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    Data(Vec<u8>),
    Zlp,
    Timeout,
    Stall,
    Gone,
}

/// The fake device.
#[derive(Debug, Default)]
pub struct FakeBulk {
    pub mps_in: usize,
    pub mps_out: usize,
    reads: Mutex<VecDeque<ReadStep>>,
    ready: Condvar,
    writes: Mutex<Vec<Vec<u8>>>,
    /// Scripted write failures, consumed one per write.
    write_errors: Mutex<VecDeque<UsbError>>,
    halts_cleared: Mutex<Vec<bool>>,
}

impl FakeBulk {
    pub fn new(mps_in: usize, mps_out: usize) -> Self {
        Self {
            mps_in,
            mps_out,
            ..Default::default()
        }
    }

    pub fn push_read(&self, step: ReadStep) {
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(step);
        self.ready.notify_all();
    }

    pub fn fail_next_write(&self, e: UsbError) {
        self.write_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(e);
    }

    /// Every write transfer so far (an empty one is a ZLP).
    pub fn writes(&self) -> Vec<Vec<u8>> {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `true` for each cleared IN halt, `false` for OUT.
    pub fn halts_cleared(&self) -> Vec<bool> {
        self.halts_cleared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl BulkIo for FakeBulk {
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        assert!(
            buf.len().is_multiple_of(self.mps_in),
            "reads must be sized to max packets"
        );
        let mut q = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            q = self
                .ready
                .wait_timeout(q, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match q.pop_front() {
            None | Some(ReadStep::Timeout) => Err(UsbError::Timeout),
            Some(ReadStep::Zlp) => Ok(0),
            Some(ReadStep::Stall) => Err(UsbError::Stall),
            Some(ReadStep::Gone) => {
                q.push_front(ReadStep::Gone);
                Err(UsbError::NoDevice)
            }
            Some(ReadStep::Data(mut d)) => {
                if d.len() > buf.len() {
                    let rest = d.split_off(buf.len());
                    q.push_front(ReadStep::Data(rest));
                }
                buf[..d.len()].copy_from_slice(&d);
                Ok(d.len())
            }
        }
    }

    fn write(&self, data: &[u8], _timeout: Duration) -> Result<usize, UsbError> {
        if let Some(e) = self
            .write_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return Err(e);
        }
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(data.to_vec());
        Ok(data.len())
    }

    fn max_packet_in(&self) -> usize {
        self.mps_in
    }

    fn max_packet_out(&self) -> usize {
        self.mps_out
    }

    fn clear_halt(&self, input: bool) -> Result<(), UsbError> {
        self.halts_cleared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input);
        Ok(())
    }
}
