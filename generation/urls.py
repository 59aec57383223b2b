"""Console routes of the generation app: the playground, tasks, webhooks with their
deliveries, and the operators' channel page."""

from django.urls import path

from generation import channel_pages, playground_views, task_pages, webhook_views

app_name = "generation"

urlpatterns = [
    path("playground/", playground_views.playground, name="playground"),
    path("playground/chat/", playground_views.chat, name="playground-chat"),
    path("playground/chat/code/", playground_views.chat_code, name="playground-chat-code"),
    path(
        "playground/usage/<str:request_id>/",
        playground_views.usage,
        name="playground-usage",
    ),
    path("playground/images/", playground_views.images, name="playground-images"),
    path("playground/tasks/", playground_views.task_submit, name="playground-task"),
    path("playground/estimate/", playground_views.estimate, name="playground-estimate"),
    path("tasks/", task_pages.tasks, name="tasks"),
    path("tasks/<str:task_id>/", task_pages.task_detail, name="task-detail"),
    path("tasks/<str:task_id>/card/", task_pages.task_card, name="task-card"),
    path("tasks/<str:task_id>/row/", task_pages.task_row, name="task-row"),
    path("tasks/<str:task_id>/cancel/", task_pages.task_cancel, name="task-cancel"),
    path("settings/webhooks/", webhook_views.webhooks, name="webhooks"),
    path(
        "settings/webhooks/secret/",
        webhook_views.webhook_secret_rotate_view,
        name="webhook-secret-rotate",
    ),
    path(
        "settings/webhooks/deliveries/<str:webhook_id>/",
        webhook_views.delivery_detail,
        name="delivery-detail",
    ),
    path(
        "settings/webhooks/deliveries/<str:webhook_id>/redeliver/",
        webhook_views.delivery_redeliver,
        name="delivery-redeliver",
    ),
    path("operations/channels/", channel_pages.channels, name="channels"),
    path(
        "operations/channels/<slug:slug>/test/",
        channel_pages.channel_test_view,
        name="channel-test",
    ),
    path(
        "operations/channels/<slug:slug>/disable/",
        channel_pages.channel_disable,
        name="channel-disable",
    ),
    path(
        "operations/channels/<slug:slug>/enable/",
        channel_pages.channel_enable,
        name="channel-enable",
    ),
]
