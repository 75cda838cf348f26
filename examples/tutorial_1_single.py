"""Tutorial section 1: a single-threaded blocking server, one client at a time.

    threadloom serve tutorial_1_single:handle_client --model single --bind 127.0.0.1:8080

(run from this folder), or ``python tutorial_1_single.py``. Try it with
``printf hi | nc 127.0.0.1 8080``.
"""


def handle_client(client_socket, addr):
    print(f"Connected to {addr}")

    data = client_socket.recv(1024).decode()
    print(f"Received: {data}")

    client_socket.send("Hello from server!".encode())
    client_socket.close()


if __name__ == "__main__":
    import threadloom

    threadloom.serve(handle_client, model="single", bind="127.0.0.1:8080")
