"""A small TCP line server: one command per line.

    help    list the commands
    time    the server's time
    echo X  X back
    count   lines served since start
    quit    close the connection

stoker keeps it alive: kill it and it is back before the next client notices.
"""

import datetime
import os
import socketserver

PORT = int(os.environ.get("PORT", "7070"))
HELP = "commands: help, time, echo TEXT, count, quit\n"


class Lines(socketserver.StreamRequestHandler):
    served = 0

    def handle(self) -> None:
        self.wfile.write(b"hello from line-server; type help\n")
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            Lines.served += 1
            command, _, rest = line.partition(" ")
            if command == "quit":
                self.wfile.write(b"bye\n")
                return
            if command == "help":
                reply = HELP
            elif command == "time":
                reply = datetime.datetime.now().astimezone().isoformat() + "\n"
            elif command == "echo":
                reply = rest + "\n"
            elif command == "count":
                reply = f"{Lines.served}\n"
            else:
                reply = f"unknown command {command!r}; {HELP}"
            self.wfile.write(reply.encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", PORT), Lines) as server:
        print(f"line-server: listening on 127.0.0.1:{PORT}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:  # SIGINT: its stop_signal in the examples
            print("line-server: stopped", flush=True)
