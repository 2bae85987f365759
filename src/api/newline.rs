//! Every JSON body ends with a newline, so that what `curl` prints does not
//! run into the shell prompt.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{ContentType, Status};
use rocket::{Request, Response};

pub struct JsonNewline;

/// `application/json`, or a JSON-based type such as `application/problem+json`.
fn is_json(content_type: &ContentType) -> bool {
    content_type.is_json()
        || (content_type.top() == "application"
            && content_type
                .sub()
                .as_str()
                .to_ascii_lowercase()
                .ends_with("+json"))
}

#[rocket::async_trait]
impl Fairing for JsonNewline {
    fn info(&self) -> Info {
        Info {
            name: "a newline after every JSON body",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, _: &'r Request<'_>, response: &mut Response<'r>) {
        if !response.content_type().is_some_and(|media| is_json(&media)) {
            return;
        }
        match response.body_mut().to_bytes().await {
            Ok(mut body) => {
                if !body.is_empty() && body.last() != Some(&b'\n') {
                    body.push(b'\n');
                }
                // Sized anew, so Content-Length counts the newline.
                response.set_sized_body(body.len(), std::io::Cursor::new(body));
            }
            // Only a body that streams from elsewhere can fail to be read;
            // what was read of it is gone.
            Err(_) => {
                response.set_status(Status::InternalServerError);
                response.set_sized_body(0, std::io::Cursor::new(Vec::new()));
            }
        }
    }
}
