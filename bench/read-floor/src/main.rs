//! The smallest read service on the service's own stack: `GET /ping`, and
//! `GET /hash/<key>`, which sends one `HMGET key FIELD...` over one shared
//! multiplexed connection and answers the values, one per line. No
//! credential, no decoding, no JSON, no log line, no metrics. What it adds
//! to its own `/ping` is the least that one Redis round trip adds to any
//! request of the service.
//!
//! Usage: read-floor PORT REDIS_URL FIELD...

use redis::aio::MultiplexedConnection;
use rocket::http::Status;
use rocket::{get, routes, State};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    connection: MultiplexedConnection,
    fields: Vec<String>,
}

#[get("/ping")]
fn ping() -> &'static str {
    "PONG!"
}

#[get("/hash/<key>")]
async fn hash(key: &str, floor: &State<Floor>) -> Result<String, Status> {
    let mut connection = floor.connection.clone();
    let values: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(key)
        .arg(&floor.fields)
        .query_async(&mut connection)
        .await
        .map_err(|_| Status::ServiceUnavailable)?;
    Ok(values.into_iter().flatten().collect::<Vec<_>>().join("\n"))
}

#[rocket::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, url, fields @ ..] = &args[..] else {
        eprintln!("usage: read-floor PORT REDIS_URL FIELD...");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT is a port number");
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let config = rocket::Config {
        port,
        log_level: rocket::config::LogLevel::Critical,
        ..rocket::Config::release_default()
    };
    let floor = Floor {
        connection,
        fields: fields.to_vec(),
    };
    let _ = rocket::custom(config)
        .manage(floor)
        .mount("/", routes![ping, hash])
        .launch()
        .await
        .expect("the floor service runs");
}
