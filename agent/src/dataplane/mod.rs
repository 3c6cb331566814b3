//! The data plane: `RuleSet` → nftables, policy routing and HTB, by reconciliation.

pub mod cli;
