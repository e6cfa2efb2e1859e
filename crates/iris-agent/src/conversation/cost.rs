//! A turn's cost from the CLI's running total.
//!
//! The CLI's `result.total_cost_usd` is the sum over every turn the *process* has run (verified
//! on 2.1.197), not the turn's own cost. A turn costs the difference from the previous result
//! of the same process, and a new process starts again at zero. Agents that misreport (no cost,
//! a value that is not a number, a negative or a decreasing total) get a warning and a turn that
//! costs nothing: a bad number must never fail a turn or inflate a budget.

/// The running total an agent process has reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunningCost {
    total: f64,
}

/// Why a reported total could not be turned into a turn's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CostAnomaly {
    /// The result carried no usable number (missing, null, or not a number).
    Missing,
    /// The total was negative or not finite.
    Invalid,
    /// The total went down: the agent's counter was reset or is wrong.
    Decreasing,
}

impl CostAnomaly {
    /// What to tell an operator.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CostAnomaly::Missing => "the agent's result carried no usable total_cost_usd",
            CostAnomaly::Invalid => "the agent reported a negative or non-finite total_cost_usd",
            CostAnomaly::Decreasing => {
                "the agent's running total_cost_usd went down since its previous turn"
            }
        }
    }
}

impl RunningCost {
    /// The cost of the turn whose result reported `reported`, and the running total to measure
    /// the next turn from. An anomaly costs the turn nothing; after a decrease, the next turn is
    /// measured from the new (lower) total, so one bad report does not zero every later turn.
    pub(crate) fn turn_cost(&mut self, reported: Option<f64>) -> Result<f64, CostAnomaly> {
        let Some(total) = reported else {
            return Err(CostAnomaly::Missing);
        };
        if !total.is_finite() || total < 0.0 {
            return Err(CostAnomaly::Invalid);
        }
        let previous = std::mem::replace(&mut self.total, total);
        if total < previous {
            return Err(CostAnomaly::Decreasing);
        }
        Ok(total - previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_turn_costs_the_difference_from_the_previous_total() {
        let mut running = RunningCost::default();
        assert_eq!(running.turn_cost(Some(0.5)), Ok(0.5));
        assert_eq!(running.turn_cost(Some(1.25)), Ok(0.75));
        // An interrupted turn repeats the total: it cost nothing more.
        assert_eq!(running.turn_cost(Some(1.25)), Ok(0.0));
    }

    #[test]
    fn a_missing_or_invalid_total_costs_nothing_and_keeps_the_baseline() {
        let mut running = RunningCost::default();
        assert_eq!(running.turn_cost(Some(1.0)), Ok(1.0));
        assert_eq!(running.turn_cost(None), Err(CostAnomaly::Missing));
        assert_eq!(running.turn_cost(Some(-3.0)), Err(CostAnomaly::Invalid));
        assert_eq!(running.turn_cost(Some(f64::NAN)), Err(CostAnomaly::Invalid));
        assert_eq!(running.turn_cost(Some(1.5)), Ok(0.5));
    }

    #[test]
    fn a_decreasing_total_costs_nothing_and_rebases() {
        let mut running = RunningCost::default();
        assert_eq!(running.turn_cost(Some(2.0)), Ok(2.0));
        assert_eq!(running.turn_cost(Some(0.5)), Err(CostAnomaly::Decreasing));
        assert_eq!(running.turn_cost(Some(0.75)), Ok(0.25));
    }
}
