//! Managed PostgreSQL: one database and one role of the same name per database an app
//! asks for (`pg:create`), on a server the platform administers.
//!
//! Contract, whatever the server (the platform's own cluster, or one it is given by URL):
//! - a role reaches its own database only: it owns it, holds no other privilege, cannot
//!   create roles or databases, and the server refuses it any other database;
//! - a database's connection limit is enforced by the server (`CONNECTION LIMIT`);
//! - `create` and `destroy` may be repeated (a retry after a crash finds its work done);
//! - a dump is PostgreSQL's custom format (`pg_dump -Fc`), streamed, and a restore of it
//!   replaces the database's whole content; both run as the database's own role, never
//!   with the admin's rights (a dump and a restore run code the owner wrote);
//! - a database's connection limit is promised: the server refuses a new database (or a
//!   larger one) when the limits together would pass its own maximum.

use async_trait::async_trait;

use crate::domain::Secret;
use crate::error::PortResult;
use crate::ports::blobs::ByteStream;

/// Whether `name` is a name the platform gives databases: a lowercase letter, then
/// lowercase letters, digits and `_`, at most 63 in all (so it needs no quoting rules).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A new database's name: `gx_` and 20 random hex digits (nothing of the app's name, which
/// other roles could read in the catalog).
pub fn new_name() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let digits: String = (0..20)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect();
    format!("gx_{digits}")
}

/// A new password: 32 letters and digits (URL-safe as is).
pub fn new_password() -> Secret {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    Secret::new(
        (0..32)
            .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
            .collect::<String>(),
    )
}

/// One database and its role, both named `name`.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    /// The database's and its role's name: lowercase letters, digits and `_`, at most 63.
    pub name: String,
    /// The role's password.
    pub password: Secret,
    /// Most connections the role may hold at once.
    pub connections: u32,
}

/// Where apps (and their developers) reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A PostgreSQL server the platform makes databases on.
#[async_trait]
pub trait Databases: Send + Sync {
    /// The server's major version (e.g. 15).
    async fn version(&self) -> PortResult<u32>;
    /// Where apps connect.
    async fn endpoint(&self) -> PortResult<Endpoint>;
    /// Makes the role and the database (the role owns it), or finds them made; sets the
    /// password and the connection limit either way.
    async fn create(&self, spec: &DatabaseSpec) -> PortResult<()>;
    /// Drops the database and the role, ending their sessions; nothing there is fine.
    async fn destroy(&self, name: &str) -> PortResult<()>;
    /// Changes the connection limit.
    async fn set_connections(&self, name: &str, connections: u32) -> PortResult<()>;
    /// Lets the role log in, or not (`pg:stop`: its sessions end too).
    async fn set_login(&self, name: &str, allowed: bool) -> PortResult<()>;
    /// Ends every session of the role (`pg:restart`).
    async fn disconnect(&self, name: &str) -> PortResult<()>;
    /// A dump of the database, as it is now, taken as its own role (`password` is the
    /// role's): never with the admin's rights, since a dump runs the owner's code.
    async fn dump(&self, name: &str, password: &Secret) -> PortResult<ByteStream>;
    /// Replaces the database's content with a dump's, loaded by the role itself (its
    /// sessions end); a dump that does not load leaves the content as it was.
    async fn restore(&self, name: &str, password: &Secret, dump: ByteStream) -> PortResult<()>;
}
