#!/usr/bin/env python3
"""Deletes JetStream streams by name (the benches start from empty streams, so the data a
previous run left, and its eviction under a size cap, does not skew the next run).

    benches/tools/delete_streams.py [--server HOST:PORT] NAME...
"""
import argparse
import json
import socket


def request(server, subject):
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # INFO
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.fg 1\r\n')
        sock.sendall(b"PUB " + subject.encode() + b" _INBOX.fg 0\r\n\r\n")
        while True:
            line = reader.readline()
            if not line:
                raise SystemExit(f"no answer to {subject}")
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG"):
                size = int(line.split()[-1])
                return json.loads(reader.read(size + 2)[:-2])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="127.0.0.1:4222")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    for name in args.names:
        answer = request(args.server, f"$JS.API.STREAM.DELETE.{name}")
        missing = answer.get("error", {}).get("err_code") == 10059
        if answer.get("success") or missing:
            print(f"stream {name}: {'deleted' if not missing else 'not there'}")
        else:
            raise SystemExit(f"stream {name}: {answer}")


if __name__ == "__main__":
    main()
