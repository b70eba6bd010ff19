"""The OpenAPI document: the error responses every operation can give, added in one place."""

ERROR_REF = {"$ref": "#/components/schemas/Error"}
COMMON = {
    "400": "Malformed body (`parse_error`) or invalid input (`invalid`, see `field_codes`).",
    "401": "No or a wrong token, or not logged in (`not_authenticated`, `authentication_failed`).",
    "415": "The body's content type is not one the operation accepts.",
    "503": "The database or the audio storage is unavailable; nothing was saved.",
}


def add_common_errors(result, generator, request, public):
    """Document the errors any operation can answer that its view does not raise itself."""
    for path in result["paths"].values():
        for operation in path.values():
            codes = ["503"]
            if any(requirement for requirement in operation.get("security", [{}])):
                codes.append("401")
            if "requestBody" in operation:
                codes += ["400", "415"]
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": COMMON[code],
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return result
