from django.urls import path, re_path

from generation.dataplane import account, catalogue, images, tasks, text
from generation.dataplane.base import unknown_route

urlpatterns = [
    path("v1/models", catalogue.models_list, name="v1-models"),
    path("v1beta/models", catalogue.gemini_models_list, name="v1beta-models"),
    path("v1/balance", account.balance, name="v1-balance"),
    path("v1/usage", account.usage, name="v1-usage"),
    path("v1/chat/completions", text.chat_completions, name="v1-chat-completions"),
    path("v1/responses", text.responses, name="v1-responses"),
    path("v1/messages", text.messages, name="v1-messages"),
    # google-genai calls /v1beta/models/...; given a base URL, 3.x calls /v1/models/...
    path("v1beta/models/<str:model>:<str:method>", text.generate_content, name="v1beta-generate"),
    path("v1/models/<str:model>:<str:method>", text.generate_content, name="v1-generate"),
    path("v1/images/generations", images.generations, name="v1-images-generations"),
    path("v1/images/edits", images.edits, name="v1-images-edits"),
    path("v1/tasks/submit", tasks.submit, name="v1-tasks-submit"),
    path("v1/tasks/query", tasks.query, name="v1-tasks-query"),
    path("v1/tasks/cancel", tasks.cancel, name="v1-tasks-cancel"),
    path("v1/tasks/cancel/<str:task_id>", tasks.cancel, name="v1-tasks-cancel-id"),
    path("v1/tasks/stream/<str:task_id>", tasks.stream, name="v1-tasks-stream"),
    # Last: any other /v1 or /v1beta URL is a 404 in the caller's envelope, not a console page.
    re_path(r"^v1(beta)?/", unknown_route, name="v1-unknown"),
]
