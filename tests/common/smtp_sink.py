"""An SMTP server for the tests (aiosmtpd), and a reader of .eml files.

Serve:  smtp_sink.py serve PORT DIR [--starttls CERT KEY | --smtps CERT KEY | --raw]
  Listens on 127.0.0.1:PORT and writes each message it accepts to DIR as
  NNNNNN.eml (the message as received) and NNNNNN.json (its envelope and
  parsed parts), each complete before it appears. With --raw, only the
  .eml: parsing costs more than the rest of the server's work. It answers 550 to a
  recipient whose address starts with "reject", and 451 to every recipient
  while DIR/defer exists. Prints "ready" once listening; exits when its
  standard input closes, so it never outlives the tests.

Parse:  smtp_sink.py parse FILE
  Prints the parsed message in FILE as the same JSON.
"""

import email
import email.policy
import itertools
import json
import os
import ssl
import sys


def parsed(raw):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "headers": {name: str(value) for name, value in message.items()},
        "content_type": message.get_content_type(),
        "parts": [part.get_content_type() for part in message.walk()],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    }


def write_whole(path, data):
    temporary = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
    os.rename(temporary, path)


class Sink:
    def __init__(self, directory, raw):
        self.directory = directory
        self.raw = raw
        self.numbers = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if os.path.exists(os.path.join(self.directory, "defer")):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        number = next(self.numbers)
        raw = envelope.original_content or envelope.content
        base = os.path.join(self.directory, "%06d" % number)
        if self.raw:
            write_whole(base + ".eml", raw)
            return "250 OK queued as %06d" % number
        record = parsed(raw)
        record["envelope_from"] = envelope.mail_from
        record["envelope_to"] = envelope.rcpt_tos
        # STARTTLS sets session.ssl; TLS from the start shows on the transport.
        record["tls"] = (
            session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None
        )
        write_whole(base + ".eml", raw)
        write_whole(base + ".json", json.dumps(record).encode())
        return "250 OK queued as %06d" % number


def context(cert, key):
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    return tls


def serve(port, directory, mode, cert, key):
    from aiosmtpd.controller import Controller

    options = {"hostname": "127.0.0.1", "port": port}
    server_options = {"decode_data": False}
    if mode == "--starttls":
        server_options["tls_context"] = context(cert, key)
        server_options["require_starttls"] = True
    elif mode == "--smtps":
        options["ssl_context"] = context(cert, key)
    controller = Controller(Sink(directory, mode == "--raw"), server_kwargs=server_options, **options)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)


def main():
    if sys.argv[1] == "parse":
        with open(sys.argv[2], "rb") as file:
            print(json.dumps(parsed(file.read())))
        return
    port, directory = int(sys.argv[2]), sys.argv[3]
    mode = sys.argv[4] if len(sys.argv) > 4 else None
    cert = sys.argv[5] if len(sys.argv) > 5 else None
    key = sys.argv[6] if len(sys.argv) > 6 else None
    serve(port, directory, mode, cert, key)


if __name__ == "__main__":
    main()
