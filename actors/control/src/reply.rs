//! How the executor's and the leader's answers look on the wire.

use ochopod_api::ErrorBody;
use ochopod_executor::Reply;
use ochopod_leader::NotLeader;
use serde_json::{json, Value};

/// The status code and JSON body for an executor [`Reply`]: the original's codes (200, 406,
/// 410, 500, 400) plus 409 for a stale epoch, every error as `{"error": ...}`.
pub fn control_reply(reply: &Reply) -> (u16, Value) {
    let body = match reply {
        Reply::Ok(v) => v.clone(),
        Reply::SoftFailure(why) => error(why),
        Reply::Dead => error("the pod is dead and idles"),
        Reply::HookFailure(why) => error(why),
        Reply::StaleEpoch { epoch, newest } => to_value(
            ErrorBody::new(format!("stale epoch {epoch}: this pod already accepted epoch {newest}"))
                .with("epoch", *epoch)
                .with("newest", *newest),
        ),
        Reply::BadRequest(why) => error(why),
    };
    (reply.status(), body)
}

/// `/reconfigure`: 200 `{}` on the leader, 409 naming the leader (or `null`) elsewhere.
pub fn reconfigure_reply(result: &Result<(), NotLeader>) -> (u16, Value) {
    match result {
        Ok(()) => (200, json!({})),
        Err(NotLeader { leader }) => {
            (ochopod_api::wire::status::CONFLICT, json!({"error": "not the leader", "leader": leader}))
        }
    }
}

fn error(why: &str) -> Value {
    to_value(ErrorBody::new(why))
}

fn to_value(body: ErrorBody) -> Value {
    serde_json::to_value(body).unwrap_or_else(|_| json!({"error": "unrepresentable error"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_maps_to_the_original_code_and_a_json_body() {
        let cases = [
            (Reply::Ok(json!({})), 200, json!({})),
            (Reply::Ok(json!({"x": 1})), 200, json!({"x": 1})),
            (Reply::SoftFailure("can_configure failed".into()), 406, json!({"error": "can_configure failed"})),
            (Reply::Dead, 410, json!({"error": "the pod is dead and idles"})),
            (Reply::HookFailure("signaled exited 2".into()), 500, json!({"error": "signaled exited 2"})),
            (Reply::BadRequest("payload lacks pods".into()), 400, json!({"error": "payload lacks pods"})),
            (
                Reply::StaleEpoch { epoch: 3, newest: 5 },
                409,
                json!({"error": "stale epoch 3: this pod already accepted epoch 5", "epoch": 3, "newest": 5}),
            ),
        ];
        for (reply, code, body) in cases {
            assert_eq!(control_reply(&reply), (code, body), "{reply:?}");
        }
    }

    #[test]
    fn reconfigure_on_a_follower_names_the_leader() {
        assert_eq!(reconfigure_reply(&Ok(())), (200, json!({})));
        assert_eq!(
            reconfigure_reply(&Err(NotLeader { leader: Some("10.0.0.1:8080".into()) })),
            (409, json!({"error": "not the leader", "leader": "10.0.0.1:8080"}))
        );
        assert_eq!(
            reconfigure_reply(&Err(NotLeader { leader: None })),
            (409, json!({"error": "not the leader", "leader": null}))
        );
    }
}
