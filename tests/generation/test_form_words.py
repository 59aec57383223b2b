"""The playground's forms say an API's errors about their fields in their own words."""

import pytest

from generation.form_words import form_message


@pytest.mark.parametrize(
    ("api", "form"),
    [
        ("Missing required parameter: 'prompt'.", "Enter a prompt."),
        ("Missing required parameter: 'params.prompt'.", "Enter a prompt."),
        ("A 'prompt' is required.", "Enter a prompt."),
        ("Missing required parameter: 'image'.", "Choose an image to edit."),
        ("Missing required parameter: 'duration'.", "Choose a value for duration."),
        ("'n' must be between 1 and 4.", "Choose 1 to 4 images."),
        ("'n' must be between 1 and 1.", "Choose 1 image."),
        ("'prompt' is over 32000 characters.", "Shorten the prompt to 32,000 characters or fewer."),
        ("'seed' must be an integer.", "Seed must be a whole number."),
        ("'aspect_ratio' must be one of 16:9, 9:16.", "Aspect ratio must be one of 16:9, 9:16."),
    ],
)
def test_api_wording_about_a_field_becomes_the_forms_wording(api, form):
    assert form_message(api) == form


@pytest.mark.parametrize(
    "message",
    [
        "Choose an image to edit.",
        "veo-3-fast makes videos of 4, 6, 8 seconds.",
        "Missing required parameter: 'model'.",  # not a field of the form: said as it is
        "'model' must be one of gpt-4.1.",
        "Insufficient balance: the wallet has 0.00 available.",
    ],
)
def test_messages_not_about_a_form_field_pass_unchanged(message):
    assert form_message(message) == message
