"""Tutorial section 2: a thread per client.

    threadloom serve tutorial_2_threads:handle_client --model threads --bind 127.0.0.1:8080

(run from this folder), or ``python tutorial_2_threads.py``. The handler is the tutorial's,
unchanged; only the flag differs from the other sections.
"""


def handle_client(client_socket, addr):
    print(f"Connected to {addr}")

    data = client_socket.recv(1024).decode()
    print(f"Received: {data}")

    client_socket.send("Hello from server!".encode())
    client_socket.close()


if __name__ == "__main__":
    import threadloom

    threadloom.serve(handle_client, model="threads", bind="127.0.0.1:8080")
