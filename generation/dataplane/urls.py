from django.urls import path

from generation.dataplane import account, catalogue, text

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
]
