"""The portal's forms: a new job of each kind, answers to clarifying questions, job filters.

The forms only parse what a person typed or uploaded into the protocol's payload; the rules of
a valid job live in :mod:`copilot.jobs.job_requests`, which :func:`copilot.jobs.services.job_submit`
applies, and whose field errors :meth:`NewJobForm.add_request_errors` shows beside the fields.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.template.defaultfilters import filesizeformat

from copilot.jobs.job_requests import (
    AGENT_FIELD,
    JSON_TOO_DEEP,
    MAX_TEXT_CHARS,
    TEXT_FIELD,
    json_too_deep,
)
from copilot.jobs.models import GenerationJob

Kind = GenerationJob.Kind

#: The largest agent JSON accepted, pasted or uploaded (bytes).
MAX_AGENT_JSON_BYTES = 1024 * 1024
#: The longest answer to one clarifying question (characters).
MAX_ANSWER_CHARS = 2_000

#: Per kind: the label and help of its text field.
TEXT_LABELS: dict[str, tuple[str, str]] = {
    Kind.DECOMPOSE: (
        "Goal",
        "Describe in your own words what the agent should do; the copilot breaks it into steps.",
    ),
    Kind.GENERATE: ("Instructions", "The steps the agent should follow, one per line."),
    Kind.UPDATE: ("Change request", "What should change in the agent below."),
    Kind.CUSTOMIZE: ("Change request", "How the template below should be adapted."),
}


class NewJobForm(forms.Form):
    """One job of ``kind``: its text, and for update and customize an agent, pasted or uploaded.

    ``payload()`` is the protocol's body for the kind, ready for ``job_submit``.
    """

    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        max_length=MAX_TEXT_CHARS,
        error_messages={
            "max_length": f"Must be at most {MAX_TEXT_CHARS:,} characters (it has %(show_value)s)."
        },
    )
    agent_json = forms.CharField(
        label="Agent JSON",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text="Paste the agent's JSON here, or upload it as a file below.",
    )
    agent_file = forms.FileField(
        label="…or upload a file",
        required=False,
        help_text=f"A .json file of at most {filesizeformat(MAX_AGENT_JSON_BYTES)}.",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = Kind(kind)
        label, help_text = TEXT_LABELS[self.kind]
        self.fields["text"].label = label
        self.fields["text"].help_text = help_text
        if self.kind not in AGENT_FIELD:
            del self.fields["agent_json"]
            del self.fields["agent_file"]
        self._agent_source = "agent_json"

    def clean_agent_file(self) -> dict | None:
        upload = self.cleaned_data.get("agent_file")
        if not upload:
            return None
        if upload.size > MAX_AGENT_JSON_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(MAX_AGENT_JSON_BYTES)}."
            )
        return _agent_from_json(upload.read(), what="The file")

    def clean_agent_json(self) -> dict | None:
        text = self.cleaned_data.get("agent_json") or ""
        if not text.strip():
            return None
        if len(text.encode()) > MAX_AGENT_JSON_BYTES:
            raise forms.ValidationError(
                f"The pasted JSON is larger than {filesizeformat(MAX_AGENT_JSON_BYTES)}."
            )
        return _agent_from_json(text, what="The pasted text")

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean() returns cleaned_data (the stubs allow None)
        data = self.cleaned_data
        if (
            self.kind not in AGENT_FIELD
            or "agent_json" in self.errors
            or "agent_file" in self.errors
        ):
            return data
        pasted, uploaded = data.get("agent_json"), data.get("agent_file")
        if pasted is not None and uploaded is not None:
            self.add_error("agent_json", "Paste the agent JSON or upload a file, not both.")
        elif pasted is None and uploaded is None:
            self.add_error("agent_json", "Paste the agent JSON or upload it as a file.")
        elif uploaded is not None:
            self._agent_source = "agent_file"
        return data

    def payload(self) -> dict[str, Any]:
        """The protocol's fields for this kind (call after ``is_valid()``)."""
        payload: dict[str, Any] = {TEXT_FIELD[self.kind]: self.cleaned_data["text"]}
        if self.kind in AGENT_FIELD:
            payload[AGENT_FIELD[self.kind]] = self.cleaned_data.get(self._agent_source)
        return payload

    def add_request_errors(self, errors: dict[str, str]) -> None:
        """Show ``InvalidJobRequest.errors`` (keyed by protocol field) beside this form's fields."""
        fields = {TEXT_FIELD[self.kind]: "text", AGENT_FIELD.get(self.kind): self._agent_source}
        for field, message in errors.items():
            self.add_error(fields.get(field), message)


def _agent_from_json(raw: str | bytes, *, what: str) -> dict:
    if json_too_deep(raw):
        raise forms.ValidationError(f"{what} is too deeply nested: {JSON_TOO_DEEP}")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise forms.ValidationError(f"{what} is not UTF-8 text, so it cannot be JSON.") from None
    except ValueError as exc:
        raise forms.ValidationError(f"{what} is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
            type(value), "a number"
        )
        raise forms.ValidationError(
            f'{what} holds {kind}; an agent is a JSON object ({{"nodes": …, "links": …}}).'
        )
    return value


class AnswerForm(forms.Form):
    """Answers to a job's clarifying questions: one optional field per question, at least one.

    Labels and examples are upstream text: templates render them escaped, never as help_text.
    """

    def __init__(self, *args: Any, questions: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.questions = [q for q in questions if isinstance(q, dict)]
        for index, question in enumerate(self.questions):
            self.fields[f"answer_{index}"] = forms.CharField(
                label=str(question.get("question") or f"Question {index + 1}"),
                required=False,
                max_length=MAX_ANSWER_CHARS,
                widget=forms.Textarea(attrs={"rows": 2}),
            )

    def clean(self) -> dict[str, Any]:
        super().clean()  # Form.clean() returns cleaned_data (the stubs allow None)
        data = self.cleaned_data
        if not self.errors and not any(data.get(name) for name in self.fields):
            raise forms.ValidationError("Answer at least one question.")
        return data

    def rows(self) -> list[tuple[dict[str, Any], forms.BoundField]]:
        """Each question beside its bound field, for the template."""
        return [(q, self[f"answer_{i}"]) for i, q in enumerate(self.questions)]

    def answers_text(self) -> str:
        """The answers as text to append to the original request (after ``is_valid()``)."""
        lines = ["Answers to the clarifying questions:"]
        for index, question in enumerate(self.questions):
            answer = self.cleaned_data.get(f"answer_{index}")
            if answer:
                asked = question.get("question") or f"Question {index + 1}"
                keyword = f" ({question['keyword']})" if question.get("keyword") else ""
                lines.append(f"- {asked}{keyword}: {answer}")
        return "\n".join(lines)

    def follow_up_payload(self, *, job: GenerationJob) -> dict[str, Any]:
        """The request of a follow-up job: ``job``'s request, its text plus the answers."""
        payload = dict(job.request)
        field = TEXT_FIELD[Kind(job.kind)]
        original = payload.get(field)
        if isinstance(original, dict):  # generate: {"goal": text, ...}
            goal = str(original.get("goal") or "")
            payload[field] = f"{goal}\n\n{self.answers_text()}".strip()
        else:
            payload[field] = f"{original or ''}\n\n{self.answers_text()}".strip()
        return payload


class JobFilterForm(forms.Form):
    """The staff's filters of the job list (GET parameters); every one optional."""

    status = forms.ChoiceField(
        choices=[("", "any status"), *GenerationJob.Status.choices], required=False
    )
    kind = forms.ChoiceField(choices=[("", "any kind"), *Kind.choices], required=False)
    owner = forms.CharField(required=False, max_length=150, label="Owner (username)")
