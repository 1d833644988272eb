//! Connection budgets that know who is asking: how many connections a trusted proxy, one
//! untrusted address and all untrusted peers together may hold on a listener, and the gate that
//! admits or refuses each new connection accordingly (see the parent module's docs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::{METRICS_MAX_CONNECTIONS, UNTRUSTED_PER_ADDRESS, UNTRUSTED_TOTAL_CAP};
use crate::forwarded::Cidr;
use crate::metrics::{Connections, Refusal};

/// How many connections whom may hold on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// All connections together.
    pub max: usize,
    /// One trusted address.
    pub per_trusted: usize,
    /// All untrusted peers together; `max - untrusted` is the trusted proxies' reserve.
    pub untrusted: usize,
    /// One untrusted address (or IPv6 /64).
    pub per_untrusted: usize,
}

impl Budget {
    /// The auth listener's budget for `max` connections.
    pub fn auth(max: usize) -> Budget {
        Budget {
            max,
            per_trusted: (max / 2).max(1),
            untrusted: (max / 4).clamp(1, UNTRUSTED_TOTAL_CAP),
            per_untrusted: UNTRUSTED_PER_ADDRESS,
        }
    }

    /// The metrics listener's budget: no peer is special there.
    pub fn metrics() -> Budget {
        Budget {
            max: METRICS_MAX_CONNECTIONS,
            per_trusted: METRICS_MAX_CONNECTIONS,
            untrusted: METRICS_MAX_CONNECTIONS,
            per_untrusted: UNTRUSTED_PER_ADDRESS,
        }
    }
}

/// Counts who holds how many connections, and admits or refuses new ones.
pub(super) struct Gate {
    budget: Budget,
    trusted: Vec<Cidr>,
    counts: Mutex<Counts>,
    stats: Arc<Connections>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    untrusted: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in the budget; given back on drop.
pub(super) struct Permit {
    gate: Arc<Gate>,
    peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub(super) trusted: bool,
}

impl Gate {
    /// A gate with nobody admitted yet.
    pub(super) fn new(budget: Budget, trusted: Vec<Cidr>, stats: Arc<Connections>) -> Arc<Gate> {
        Arc::new(Gate {
            budget,
            trusted,
            counts: Mutex::new(Counts::default()),
            stats,
        })
    }

    /// A place for a new connection from `ip`, or why there is none.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let trusted = self.trusted.iter().any(|c| c.contains(ip));
        let peer = peer_key(ip);
        let b = &self.budget;
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = c.by_peer.get(&peer).copied().unwrap_or(0);
        if c.total >= b.max {
            return Err(Refusal::Capacity);
        }
        if trusted {
            if held >= b.per_trusted {
                return Err(Refusal::PerAddress);
            }
        } else {
            if held >= b.per_untrusted {
                return Err(Refusal::PerAddress);
            }
            if c.untrusted >= b.untrusted {
                return Err(Refusal::UntrustedBudget);
            }
            c.untrusted += 1;
        }
        c.total += 1;
        c.by_peer.insert(peer, held + 1);
        drop(c);
        self.stats.opened(trusted);
        Ok(Permit {
            gate: self.clone(),
            peer,
            trusted,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self
            .gate
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if !self.trusted {
            c.untrusted = c.untrusted.saturating_sub(1);
        }
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
        drop(c);
        self.gate.stats.closed(self.trusted);
    }
}

/// The address a peer is counted under: IPv4 (also when IPv4-mapped), or an IPv6 /64.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn gate(budget: Budget, trusted: &[&str]) -> Arc<Gate> {
        Gate::new(
            budget,
            trusted.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            Arc::new(Connections::default()),
        )
    }

    #[test]
    fn untrusted_peers_get_a_small_share_and_trusted_ones_keep_a_reserve() {
        let g = gate(Budget::auth(400), &["127.0.0.1/32"]);
        assert_eq!(g.budget.untrusted, 100);
        // One untrusted address: its own budget, then refusals.
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held: Vec<Permit> = (0..UNTRUSTED_PER_ADDRESS)
            .map(|_| g.admit(a).unwrap())
            .collect();
        assert_eq!(g.admit(a).err(), Some(Refusal::PerAddress));
        // Many untrusted addresses: the untrusted share, then refusals for everyone new.
        for i in 0..200u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(
                u32::from_be_bytes([10, 1, 0, 0]) + i,
            ));
            match g.admit(ip) {
                Ok(p) => held.push(p),
                Err(r) => assert_eq!(r, Refusal::UntrustedBudget),
            }
        }
        assert_eq!(held.len(), 100);
        assert_eq!(g.stats.open(false), 100);
        // The trusted proxy still gets its connections, up to its own (large) budget.
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let proxied: Vec<Permit> = (0..200).map(|_| g.admit(proxy).unwrap()).collect();
        assert_eq!(g.admit(proxy).err(), Some(Refusal::PerAddress));
        assert_eq!(g.stats.open(true), 200);
        // Giving connections back frees their places.
        held.truncate(50);
        assert!(g.admit("10.9.9.9".parse().unwrap()).is_ok());
        drop(proxied);
        assert_eq!(g.stats.open(true), 0);
        drop(held);
        assert_eq!(g.counts.lock().unwrap().by_peer.len(), 0);
        assert_eq!(g.counts.lock().unwrap().total, 0);
    }

    #[test]
    fn the_listener_maximum_is_never_exceeded() {
        let g = gate(Budget::auth(64), &["0.0.0.0/0"]);
        let ips: Vec<IpAddr> = (0..64u32)
            .map(|i| {
                IpAddr::from(std::net::Ipv4Addr::from(
                    u32::from_be_bytes([192, 168, 0, 0]) + i,
                ))
            })
            .collect();
        let held: Vec<Permit> = ips.iter().map(|ip| g.admit(*ip).unwrap()).collect();
        assert_eq!(g.admit(ips[0]).err(), Some(Refusal::Capacity));
        drop(held);
        assert!(g.admit(ips[0]).is_ok());
    }

    #[test]
    fn ipv6_peers_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_ne!(peer_key(a), peer_key("2001:db8:1:3::1".parse().unwrap()));
        let mapped = IpAddr::V6("::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(peer_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
