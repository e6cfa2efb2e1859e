//! Tokens and cost: deterministic, so tests can compute every number fake-claude reports.
//!
//! - A text of `n` bytes is `ceil(n / 4)` tokens ([`tokens`]).
//! - An API call's input is the prompt it answers (the user's text, plus the tool results of
//!   earlier calls in the same turn); its output is the text and tool input it produced.
//! - A call costs `input × $5/Mtok + output × $25/Mtok` (the real CLI's default model's list
//!   price), kept in whole nano-dollars so sums are exact.
//! - Like the real CLI (2.1.197), `result.total_cost_usd` and `modelUsage[*]` are running totals
//!   over every turn of the process (zero at spawn); `result.usage` is the turn's own tokens. An
//!   interrupted turn, an API error and `/clear` add nothing.

/// Nano-dollars per input token ($5 per million).
pub const INPUT_NANOS_PER_TOKEN: u64 = 5_000;
/// Nano-dollars per output token ($25 per million).
pub const OUTPUT_NANOS_PER_TOKEN: u64 = 25_000;

/// Token counts: one token per four bytes, rounded up.
pub fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Input and output tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
}

impl Tokens {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
    }

    /// What these tokens cost, in nano-dollars.
    pub fn cost_nanos(self) -> u64 {
        self.input
            .saturating_mul(INPUT_NANOS_PER_TOKEN)
            .saturating_add(self.output.saturating_mul(OUTPUT_NANOS_PER_TOKEN))
    }
}

/// The running totals of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every token counted so far.
    pub tokens: Tokens,
    /// Their cost, in nano-dollars.
    pub cost_nanos: u64,
}

impl Totals {
    /// Counts a finished turn's tokens.
    pub fn add(&mut self, turn: Tokens) {
        self.tokens.add(turn);
        self.cost_nanos = self.cost_nanos.saturating_add(turn.cost_nanos());
    }

    /// The total cost in US dollars.
    pub fn usd(self) -> f64 {
        self.cost_nanos as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_up() {
        assert_eq!(tokens(0), 0);
        assert_eq!(tokens(1), 1);
        assert_eq!(tokens(4), 1);
        assert_eq!(tokens(5), 2);
    }

    #[test]
    fn the_real_price_list() {
        // The recording's first turn: 101 tokens in, 5 out, $0.00063.
        let turn = Tokens {
            input: 101,
            output: 5,
        };
        assert_eq!(turn.cost_nanos(), 630_000);
        let mut totals = Totals::default();
        totals.add(turn);
        assert_eq!(totals.usd(), 0.00063);
        totals.add(Tokens {
            input: 102,
            output: 5,
        });
        assert_eq!(totals.tokens.input, 203);
        assert_eq!(totals.usd(), 0.001265);
    }
}
