"""Tutorial section 5: the Flask app, as written, served by threadloom instead of app.run.

    threadloom serve tutorial_5_flask:app --model pool --threads 16 --bind 127.0.0.1:8080

(run from this folder). Any model works: ``--model threads``, ``--model asyncio`` (the app
then runs on the loop's thread pool) or ``--model single``. ``python tutorial_5_flask.py``
still runs Flask's own development server, as in the tutorial.
"""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def home():
    return "Hello from Multi-threaded Flask Server!"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8080, threaded=True)
