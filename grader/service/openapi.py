"""The JSON API's OpenAPI 3.1 description, served at /api/openapi.json (a test checks that it
names exactly the API's routes)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "One line saying why", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
_ATTEMPT = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}}}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_ASG = [{"name": "assignment", "in": "path", "required": True, "schema": {"type": "string"}}]
_ERRORS = {"401": _ERROR, "403": _ERROR, "404": _ERROR}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "nngrader service", "version": "1",
             "description": "Hand in notebooks, follow their grading, read their feedback. Authenticate with "
                            "`Authorization: Bearer TOKEN` (the personal access token)."},
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Submission": {"type": "object", "required": ["id", "assignment", "state"], "properties": {
                "id": {"type": "integer"}, "assignment": {"type": "string"}, "filename": {"type": "string"},
                "submitted_at": {"type": "number", "description": "seconds since the epoch"},
                "state": {"enum": ["queued", "grading", "done"]},
                "position": {"type": ["integer", "null"], "description": "1 = graded next"},
                "message": {"type": "string"},
                "status": {"enum": ["graded", "error", "timeout", None]},
                "reason": {"type": "string"}, "score": {"type": ["number", "null"]},
                "max_score": {"type": ["number", "null"]}, "status_url": {"type": "string"},
                "feedback_url": {"type": "string"}}},
        },
    },
    "security": [{"token": []}],
    "paths": {
        "/api/me": {"get": {"summary": "Who the token belongs to, and the assignments with their policies",
                            "responses": {"200": {"description": "The user"}, "401": _ERROR}}},
        "/api/assignments/{assignment}/submissions": {"post": {
            "summary": "Hand in a notebook (stored durably before the answer)", "parameters": _ASG,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}}}},
            "responses": {"202": {"description": "Accepted and queued", **_ATTEMPT}, "400": _ERROR, **_ERRORS,
                          "413": _ERROR, "429": {**_ERROR, "description": "Over the submission limit; "
                                                 "Retry-After says when the next one is allowed"}}}},
        "/api/submissions": {"get": {"summary": "Your submissions, oldest first",
                                     "responses": {"200": {"description": "A list of Submission"}, "401": _ERROR}}},
        "/api/submissions/{id}": {"get": {"summary": "Where a submission stands", "parameters": _ID,
                                          "responses": {"200": _ATTEMPT | {"description": "The submission"},
                                                        **_ERRORS}}},
        "/api/submissions/{id}/events": {"get": {
            "summary": "Server-Sent Events: the Submission each time its state changes, until it is done",
            "parameters": _ID, "responses": {"200": {"description": "text/event-stream of Submission",
                                                     "content": {"text/event-stream": {}}}, **_ERRORS}}},
        "/api/submissions/{id}/report": {"get": {
            "summary": "The feedback: the grader.report/1 report (hidden checks without details), the final "
                       "grade and lateness", "parameters": _ID,
            "responses": {"200": {"description": "The report"}, **_ERRORS, "409": _ERROR}}},
        "/api/assignments/{assignment}/gradebook": {"get": {
            "summary": "Instructors: every student's attempts and the one that counts", "parameters": _ASG,
            "responses": {"200": {"description": "student id -> attempts"}, **_ERRORS}}},
        "/api/assignments/{assignment}/regrade": {"post": {
            "summary": "Instructors: grade every attempt again (new results beside the old)", "parameters": _ASG,
            "responses": {"202": {"description": "How many were queued"}, **_ERRORS}}},
        "/api/health": {"get": {"summary": "The queue's counts", "security": [],
                                "responses": {"200": {"description": "ok"}}}},
        "/api/openapi.json": {"get": {"summary": "This description", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
}
