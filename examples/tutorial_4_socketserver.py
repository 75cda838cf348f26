"""Tutorial section 4: a socketserver.BaseRequestHandler subclass, unchanged.

    threadloom serve tutorial_4_socketserver:RequestHandler --model threads --bind 127.0.0.1:8080

(run from this folder), or ``python tutorial_4_socketserver.py``. Any sync model works:
``--model pool`` or ``--model single`` as well.
"""

import socketserver


class RequestHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(1024).decode()
        print(f"Received: {data}")
        self.request.sendall("Hello from server!".encode())


if __name__ == "__main__":
    import threadloom

    threadloom.serve(RequestHandler, model="threads", bind="127.0.0.1:8080")
