"""The playground's forms speak to people, not to API clients: an API error about one of a
form's fields ("Missing required parameter: 'prompt'.") is said in the form's words ("Enter a
prompt.") before the form shows it. Messages already written for people pass unchanged."""

import re

# What the fields are called on the page (their <label>s).
LABELS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "n": "Images",
    "size": "Size",
    "quality": "Quality",
    "duration": "Duration",
    "aspect_ratio": "Aspect ratio",
    "seed": "Seed",
    "image": "Image to edit",
    "mask": "Mask",
}

# A missing value is asked for with the field's verb: you enter text, choose a file.
MISSING = {
    "prompt": "Enter a prompt.",
    "negative_prompt": "Enter a negative prompt.",
    "image": "Choose an image to edit.",
    "mask": "Choose a mask.",
}

_MISSING = re.compile(r"^(?:Missing required parameter: '([\w.]+)'|An? '([\w.]+)' is required)\.$")
_BETWEEN = re.compile(r"^'n' must be between (\d+) and (\d+)\.$")
_OVER = re.compile(r"^'([\w.]+)' is over (\d+) characters\.$")
_INTEGER = re.compile(r"^'([\w.]+)' must be an integer\.$")
_QUOTED = re.compile(r"^'([\w.]+)' ")


def form_message(message: str, param: str | None = None) -> str:
    """``message`` in the playground form's words, when it is an API's wording about a field."""
    if match := _MISSING.match(message):
        field = (match[1] or match[2]).removeprefix("params.")
        label = LABELS.get(field)
        if field in MISSING:
            return MISSING[field]
        if label:
            return f"Choose a value for {label.lower()}."
        return message
    if match := _BETWEEN.match(message):
        low, high = match[1], match[2]
        return f"Choose {low} to {high} images." if low != high else f"Choose {low} image."
    if match := _OVER.match(message):
        label = LABELS.get(match[1].removeprefix("params."))
        if label:
            return f"Shorten the {label.lower()} to {int(match[2]):,} characters or fewer."
    if match := _INTEGER.match(message):
        label = LABELS.get(match[1].removeprefix("params."))
        if label:
            return f"{label} must be a whole number."
    if match := _QUOTED.match(message):
        label = LABELS.get(match[1].removeprefix("params."))
        if label:
            return f"{label} {message[match.end() :]}"
    return message
