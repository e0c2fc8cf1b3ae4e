# Benchmark peer: the seed's Python stack (FastAPI under gunicorn + uvicorn workers) serving
# GET /api/users/{id} from the same SQLite file keel-demo uses, the way a FastAPI service would
# (sqlite3 from the standard library, one connection per worker, the blocking call in the thread
# pool via a plain `def` endpoint). Started by bench/compare_users.sh.
import os
import sqlite3
import threading

from fastapi import FastAPI, HTTPException

app = FastAPI()
DB = os.environ["USERS_DB"]
_local = threading.local()


def conn():
    c = getattr(_local, "conn", None)
    if c is None:
        c = sqlite3.connect(DB, check_same_thread=False)
        c.row_factory = sqlite3.Row
        _local.conn = c
    return c


@app.get("/api/users/{user_id}")
def get_user(user_id: int):
    row = conn().execute("SELECT id, name, email, created_at, updated_at FROM users WHERE id = ?",
                         (user_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no user with id {user_id}")
    return dict(row)
