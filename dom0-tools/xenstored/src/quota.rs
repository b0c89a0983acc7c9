//! Per-domain resource limits. Privileged callers (dom0) are exempt except
//! for the hard caps that protect the daemon itself.

/// Limits applied to unprivileged domains (defaults follow C xenstored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Nodes a domain may own.
    pub max_nodes: usize,
    /// Watches per connection.
    pub max_watches: usize,
    /// Concurrent transactions per connection.
    pub max_transactions: usize,
    /// Bytes of value per node.
    pub max_entry_size: usize,
    /// Queued, unread watch events per connection; further events are dropped.
    pub max_pending_events: usize,
    /// Hard cap on transactions for privileged connections too.
    pub max_transactions_privileged: usize,
    /// Hard cap on watches for privileged connections too.
    pub max_watches_privileged: usize,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            max_nodes: 1000,
            max_watches: 128,
            max_transactions: 10,
            max_entry_size: 2048,
            max_pending_events: 1024,
            max_transactions_privileged: 1024,
            max_watches_privileged: 65536,
        }
    }
}

impl Quota {
    pub fn transactions(&self, privileged: bool) -> usize {
        if privileged {
            self.max_transactions_privileged
        } else {
            self.max_transactions
        }
    }

    pub fn watches(&self, privileged: bool) -> usize {
        if privileged {
            self.max_watches_privileged
        } else {
            self.max_watches
        }
    }

    pub fn entry_size(&self, privileged: bool) -> usize {
        if privileged {
            crate::wire::XENSTORE_PAYLOAD_MAX
        } else {
            self.max_entry_size
        }
    }

    pub fn nodes(&self, privileged: bool) -> usize {
        if privileged {
            usize::MAX
        } else {
            self.max_nodes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_exempt() {
        let q = Quota::default();
        assert_eq!(q.nodes(true), usize::MAX);
        assert_eq!(q.nodes(false), 1000);
        assert_eq!(q.entry_size(false), 2048);
        assert_eq!(q.entry_size(true), 4096);
        assert!(q.transactions(true) > q.transactions(false));
        assert!(q.watches(true) > q.watches(false));
    }
}
