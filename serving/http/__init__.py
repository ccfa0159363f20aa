"""HTTP front end of the ingress: thin routers (oip, v1, admin) over the data plane and the
admin control; `app.py` builds the FastAPI app and includes each router explicitly."""
