"""A FastAPI app under threadloom's asyncio model.

    threadloom serve fastapi_app:app --model asyncio --bind 127.0.0.1:8080

(run from this folder; needs ``pip install fastapi``). Try ``curl localhost:8080/items/3?q=x``.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def home():
    return {"message": "Hello from FastAPI on threadloom!"}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}
