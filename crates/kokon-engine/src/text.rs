//! Pure text helpers shared by engines: UTF-8 reassembly and stop sequences.

/// Reassembles UTF-8 text from token byte pieces that may split characters.
#[derive(Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Adds bytes; returns the longest complete UTF-8 prefix available.
    /// Invalid sequences are replaced by U+FFFD rather than stalling output.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_owned();
                self.pending.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                // Incomplete trailing character: keep it for the next piece.
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                out
            }
        }
    }

    /// Whatever is left at the end (lossily decoded).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Applies OpenAI `stop` sequences to streamed text.
///
/// Text that could be the start of a stop sequence is held back until it is
/// known not to be one, so a stop sequence never leaks into the output.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What [`StopMatcher::push`] decided. Content: no `Debug`, so it cannot
/// reach a log.
#[derive(PartialEq, Eq)]
pub struct StopStep {
    /// Text safe to emit now.
    pub emit: String,
    /// True when a stop sequence was found: generation must end.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopStep {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return StopStep {
                emit,
                stopped: true,
            };
        }
        let keep = self.longest_stop_prefix_suffix();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopStep {
            emit,
            stopped: false,
        }
    }

    /// Flushes held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in self.held.char_indices() {
                let suffix = &self.held[i..];
                if suffix.len() < stop.len() && stop.starts_with(suffix) {
                    best = best.max(suffix.len());
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_pieces_split_inside_a_character() {
        let bytes = "héllo €".as_bytes();
        let mut a = Utf8Assembler::default();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&a.push(&[*b]));
        }
        out.push_str(&a.finish());
        assert_eq!(out, "héllo €");
    }

    #[test]
    fn stop_sequence_split_across_pieces_is_not_emitted() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        let mut out = String::new();
        let mut stopped = false;
        for piece in ["hello E", "N", "D tail"] {
            let step = m.push(piece);
            out.push_str(&step.emit);
            if step.stopped {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(out, "hello ");
    }

    #[test]
    fn near_misses_are_released() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("EN").emit, "");
        assert_eq!(m.push("x").emit, "ENx");
        assert_eq!(m.push("E").emit, "");
        assert_eq!(m.finish(), "E");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(vec!["b".into(), "a".into()]);
        let step = m.push("xxab");
        assert_eq!((step.emit.as_str(), step.stopped), ("xx", true));
    }
}
