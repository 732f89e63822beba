# `flask` finds the app from the project root (create_app() in backend/__init__.py).
FLASK_APP=backend
