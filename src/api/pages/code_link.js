    // What the pages do with the link they were opened by. The link is
    // /verify#email=...&code=..., /reset#... or /revert#...: the fragment
    // never reaches a server, and opening the page spends nothing. Only the
    // button does.
    const INVALID = "This code is invalid or has expired. Ask for a new one.";
    const statusLine = document.getElementById("status");

    function say(text, kind) {
      statusLine.textContent = text;
      statusLine.className = kind || "";
    }

    // The six digits of a verification or reset code.
    const DIGITS = /^[0-9]{6}$/;

    // The email and the code of the link, shown as text; null, and the page
    // says so, when either is missing or the code does not match `shape`.
    function linkFields(shape) {
      const fields = {};
      for (const pair of location.hash.replace(/^#/, "").split("&")) {
        const at = pair.indexOf("=");
        if (at < 0) continue;
        try {
          fields[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1));
        } catch (malformed) {
          // A broken escape: the field counts as missing.
        }
      }
      const email = (fields.email || "").trim();
      const code = (fields.code || "").trim();
      if (!email || !shape.test(code)) {
        say("This link is incomplete; copy the whole link from your email.", "failed");
        return null;
      }
      document.getElementById("email").textContent = email;
      document.getElementById("code").textContent = code;
      return { email: email, code: code };
    }

    // POSTs `body` as JSON: the response, or null (and the page says so)
    // when the service cannot be reached.
    async function post(path, body) {
      try {
        return await fetch(path, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Accept": "application/json" },
          body: JSON.stringify(body),
          credentials: "omit",
          cache: "no-store",
        });
      } catch (unreachable) {
        say("The service could not be reached. Try again in a moment.", "failed");
        return null;
      }
    }

    // The problem document of a failed answer, and its field errors.
    async function problemOf(response) {
      let problem = {};
      try {
        problem = await response.json();
      } catch (notJson) {
        // Not a problem document: no type, no field errors.
      }
      const errors = Array.isArray(problem.errors) ? problem.errors : [];
      return { type: problem.type, errors: errors };
    }

    // A failure neither page handles on its own terms.
    function sayOtherwise(status) {
      if (status === 429) {
        say("Too many attempts; try again later.", "failed");
      } else {
        say("Something went wrong (HTTP " + status + "). Try again in a moment.", "failed");
      }
    }

    // A page whose button sends the link's email and code to `path` and
    // nothing else: it says `done` when the code works, and that the code
    // is dead when the service refuses it.
    function sendOnPress(shape, path, done) {
      const button = document.getElementById("submit");
      const link = linkFields(shape);
      if (!link) return;
      document.getElementById("form").hidden = false;

      button.addEventListener("click", async function () {
        button.disabled = true;
        say("Checking the code…");
        const response = await post(path, link);
        if (!response) {
          button.disabled = false;
        } else if (response.ok) {
          say(done, "done");
          button.hidden = true;
        } else {
          const problem = await problemOf(response);
          if (response.status === 422 && (problem.type === "/problems/invalid-code" || problem.errors.length > 0)) {
            // A code or an email the service refuses as malformed is as dead
            // as an expired code: a new one is the way on.
            say(INVALID, "failed");
            button.hidden = true;
          } else {
            sayOtherwise(response.status);
            button.disabled = false;
          }
        }
      });
    }
