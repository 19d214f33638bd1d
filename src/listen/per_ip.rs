//! `--max-connections-per-ip`: how many connections each client address holds, or, behind a
//! trusted proxy, how many requests each forwarded client has in flight; one [`PerIp`] counts
//! one of the two. An IPv6 client counts by its /64, since anyone with one address has the
//! whole block. What is refused beyond the limit, and how, is the caller's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts by client address, against a limit.
#[derive(Debug)]
pub struct PerIp {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection (or request) of an address, counted until dropped.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// For `plan`'s `--max-connections-per-ip`, this process's share of it; `None` when off.
    pub fn for_plan(plan: &crate::config::Plan) -> Option<Arc<Self>> {
        let limit = plan.clients.per_ip?;
        Some(Self::new(limit.div_ceil(plan.supervise.workers.max(1))))
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Count one more for `ip`, unless it holds the limit already.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            owner: Arc::clone(self),
            key,
        })
    }

    /// How many `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// What an address counts as: itself for IPv4 (an IPv4-mapped IPv6 address too), its /64
/// for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_limit_and_gets_slots_back_when_dropped() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = per_ip.enter(a).unwrap();
        let _two = per_ip.enter(a).unwrap();
        assert!(per_ip.enter(a).is_none());
        assert!(
            per_ip.enter(b).is_some(),
            "another address has its own count"
        );
        drop(one);
        assert_eq!(per_ip.held(a), 1);
        assert!(per_ip.enter(a).is_some());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_itself() {
        let per_ip = PerIp::new(1);
        let _held = per_ip.enter("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(per_ip
            .enter("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        let other = per_ip.enter("2001:db8:1:3::1".parse().unwrap());
        assert!(other.is_some());
        let _v4 = per_ip.enter("192.0.2.7".parse().unwrap()).unwrap();
        assert!(per_ip.enter("::ffff:192.0.2.7".parse().unwrap()).is_none());
        assert!(per_ip.counts.lock().unwrap().len() == 3);
    }
}
