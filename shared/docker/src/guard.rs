//! The wall around app containers on one Docker engine, as packet filter rules the platform
//! installs at start (idempotently; they stay when it stops, so replicas that outlive it
//! stay walled off).
//!
//! Every app network is a bridge whose interface the platform names: `gxe…` when apps may
//! reach the internet, `gxn…` when they may not (the platform's `--app-egress`). Two chains
//! of the `filter` table match those interfaces alone:
//! - `GIGALIXIR-APPS`, jumped to from `DOCKER-USER` (traffic a container sends through the
//!   host): answers pass; the link-local range (169.254.0.0/16, where clouds serve instance
//!   metadata and its credentials) is dropped; from a `gxn…` bridge, anything leaving the
//!   bridge is dropped.
//! - `GIGALIXIR-HOST`, jumped to from `INPUT` (traffic a container sends to the host itself,
//!   at any of its addresses: the platform's API, SSH, a database): answers to connections
//!   the host opened pass (the router, `ps:ssh`), nothing else does.
//!
//! Traffic between two apps' bridges is already dropped by the engine's own isolation
//! chains; traffic between the replicas of one app (clustering) stays on its bridge.

use std::process::Output;

use sha2::{Digest, Sha256};

use crate::error::{PortError, PortResult};

/// The chain for traffic that app containers send through the host.
pub const APPS_CHAIN: &str = "GIGALIXIR-APPS";
/// The chain for traffic that app containers send to the host.
pub const HOST_CHAIN: &str = "GIGALIXIR-HOST";
/// What every app bridge's interface name starts with (`iptables` takes `gx+`).
pub const BRIDGE_PREFIX: &str = "gx";
/// The link-local range: cloud metadata servers answer at 169.254.169.254.
pub const LINK_LOCAL: &str = "169.254.0.0/16";

/// The bridge interface of the network `network` (at most 15 characters, the kernel's
/// limit): `gxe` or `gxn` (egress allowed or not) and 12 hex digits of its name's hash.
pub fn bridge_name(network: &str, egress: bool) -> String {
    let hash = hex::encode(Sha256::digest(network.as_bytes()));
    let kind = if egress { 'e' } else { 'n' };
    format!("{BRIDGE_PREFIX}{kind}{}", &hash[..12])
}

/// The rules, chain by chain, in order.
pub fn rules() -> Vec<(&'static str, Vec<String>)> {
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let any = format!("{BRIDGE_PREFIX}+");
    let closed = format!("{BRIDGE_PREFIX}n+");
    vec![
        (
            APPS_CHAIN,
            words("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
        ),
        (APPS_CHAIN, words(&format!("-d {LINK_LOCAL} -j DROP"))),
        (
            APPS_CHAIN,
            words(&format!("-i {closed} ! -o {closed} -j DROP")),
        ),
        (
            HOST_CHAIN,
            words("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
        ),
        (HOST_CHAIN, words("-j DROP")),
        ("DOCKER-USER", words(&format!("-i {any} -j {APPS_CHAIN}"))),
        ("INPUT", words(&format!("-i {any} -j {HOST_CHAIN}"))),
    ]
}

async fn iptables(args: &[&str]) -> PortResult<Output> {
    tokio::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            PortError::unavailable(format!(
                "walling off app containers needs `iptables` (root, or CAP_NET_ADMIN): {e}"
            ))
        })
}

fn refused(what: &str, out: &Output) -> PortError {
    PortError::unavailable(format!(
        "walling off app containers: iptables {what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Installs the chains and rules where missing; leaves those already there (several
/// platforms on one engine share them).
pub async fn install() -> PortResult<()> {
    let docker_user = iptables(&["-S", "DOCKER-USER"]).await?;
    if !docker_user.status.success() {
        return Err(PortError::unavailable(format!(
            "walling off app containers: the Docker engine keeps no DOCKER-USER chain (is it \
             running with its iptables management on?): {}",
            String::from_utf8_lossy(&docker_user.stderr).trim()
        )));
    }
    for chain in [APPS_CHAIN, HOST_CHAIN] {
        if !iptables(&["-S", chain]).await?.status.success() {
            let out = iptables(&["-N", chain]).await?;
            // Another platform may have made it meanwhile.
            if !out.status.success() && !iptables(&["-S", chain]).await?.status.success() {
                return Err(refused(&format!("-N {chain}"), &out));
            }
        }
    }
    for (chain, rule) in rules() {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check: Vec<&str> = [&["-C", chain][..], &rule].concat();
        if iptables(&check).await?.status.success() {
            continue;
        }
        // The jumps go first in their built-in chains; our own chains keep their order.
        let add: Vec<&str> = if chain == APPS_CHAIN || chain == HOST_CHAIN {
            [&["-A", chain][..], &rule].concat()
        } else {
            [&["-I", chain, "1"][..], &rule].concat()
        };
        let out = iptables(&add).await?;
        if !out.status.success() {
            return Err(refused(&add.join(" "), &out));
        }
    }
    Ok(())
}

/// The ports the platform's own PostgreSQL servers may listen on, which app containers
/// may reach at the host's bridge gateway (`--postgres-port` is one of them).
pub const DATABASE_PORTS: std::ops::RangeInclusive<u16> = 54320..=54419;

/// The rule letting app containers reach a database server on this host: TCP to the
/// gateway address of Docker's default bridge, on [`DATABASE_PORTS`] only.
pub fn database_rule(gateway: std::net::IpAddr) -> Vec<String> {
    format!(
        "-d {gateway}/32 -p tcp --dport {}:{} -j ACCEPT",
        DATABASE_PORTS.start(),
        DATABASE_PORTS.end()
    )
    .split(' ')
    .map(str::to_owned)
    .collect()
}

/// Lets app containers reach the platform's database server (first in
/// [`HOST_CHAIN`], before its final drop); once per engine, kept like the other rules.
pub async fn admit_databases(gateway: std::net::IpAddr) -> PortResult<()> {
    install().await?;
    let rule = database_rule(gateway);
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    if iptables(&[&["-C", HOST_CHAIN][..], &rule].concat())
        .await?
        .status
        .success()
    {
        return Ok(());
    }
    let add = [&["-I", HOST_CHAIN, "1"][..], &rule].concat();
    let out = iptables(&add).await?;
    if !out.status.success() {
        return Err(refused(&add.join(" "), &out));
    }
    Ok(())
}

/// The host's address on Docker's default bridge (`docker0`), which containers on any
/// network reach through the host.
pub async fn bridge_gateway() -> PortResult<std::net::IpAddr> {
    let docker = crate::connect()?;
    let net = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(PortError::unavailable)?;
    // The gateway as configured, else the subnet's first address (the engine's choice
    // when none is configured).
    net.ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| {
            if let Some(g) = c.gateway.and_then(|g| g.parse::<std::net::Ipv4Addr>().ok()) {
                return Some(g);
            }
            let (net, _) = c.subnet.as_deref()?.split_once('/')?;
            let net: std::net::Ipv4Addr = net.parse().ok()?;
            Some(std::net::Ipv4Addr::from(u32::from(net) + 1))
        })
        .map(std::net::IpAddr::V4)
        .ok_or_else(|| {
            PortError::unavailable("Docker's default bridge has no IPv4 gateway".to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_the_kernel_and_say_whether_egress_is_allowed() {
        let open = bridge_name("gx-default-my-app", true);
        let closed = bridge_name("gx-default-my-app", false);
        assert_eq!(open.len(), 15);
        assert!(open.starts_with("gxe") && closed.starts_with("gxn"));
        assert_eq!(open[3..], closed[3..]);
        assert_ne!(open, bridge_name("gx-default-other", true));
    }
}
