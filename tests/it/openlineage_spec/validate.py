"""Validate OpenLineage events (one JSON object per line on stdin) against the official JSON
schemas: the RunEvent of spec 2-0-2 and, for every facet, the schema its _schemaURL names.

The schema files beside this script are the OpenLineage repository's spec/ files (Apache-2.0,
OpenLineage/OpenLineage at 8f02abfb7a252783b95df79f443edb13959bf52c); openlineage-python does
not ship them. The installed openlineage-python (its generated facet classes) gives the schema
URL each standard facet must carry, so the events use the facet versions the client library
emits. Prints one line per problem; exit 1 when there is any.
"""

import datetime
import json
import pathlib
import sys
import uuid

import jsonschema
import referencing
from openlineage.client.generated import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    symlinks_dataset,
)
from openlineage.client.generated.base import RunEvent

HERE = pathlib.Path(__file__).parent
REPO = HERE.parent.parent.parent

# Facet key -> the schema URL openlineage-python's class for it declares.
CLIENT_URLS = {
    "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet._get_schema(),
    "dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet._get_schema(),
    "errorMessage": error_message_run.ErrorMessageRunFacet._get_schema(),
    "jobType": job_type_job.JobTypeJobFacet._get_schema(),
    "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet._get_schema(),
    "parent": parent_run.ParentRunFacet._get_schema(),
    "schema": schema_dataset.SchemaDatasetFacet._get_schema(),
    "symlinks": symlinks_dataset.SymlinksDatasetFacet._get_schema(),
}


def registry():
    resources = []
    files = list(HERE.glob("*.json")) + list((HERE / "facets").glob("*.json"))
    files += list((REPO / "schemas" / "openlineage").glob("*.json"))
    for path in files:
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], referencing.Resource.from_contents(doc)))
    return referencing.Registry().with_resources(resources)


def check(validator_for, url, instance, where, problems):
    try:
        validator = validator_for(url)
    except referencing.exceptions.Unresolvable:
        problems.append(f"{where}: no schema for {url}")
        return
    for error in validator.iter_errors(instance):
        problems.append(f"{where}: {error.message} at {list(error.absolute_path)}")


def main():
    reg = registry()

    def validator_for(url):
        reg.resolver().lookup(url)  # Unresolvable when no schema file has this URL
        return jsonschema.Draft202012Validator({"$ref": url}, registry=reg, format_checker=jsonschema.FormatChecker())

    problems = []
    events = [json.loads(line) for line in sys.stdin if line.strip()]
    for i, event in enumerate(events):
        where = f"event {i} ({event.get('eventType')} {event.get('job', {}).get('name')})"
        if event.get("schemaURL") != RunEvent._get_schema():
            problems.append(f"{where}: schemaURL {event.get('schemaURL')} is not {RunEvent._get_schema()}")
        check(validator_for, event.get("schemaURL", ""), event, where, problems)
        try:
            uuid.UUID(event["run"]["runId"])
            datetime.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError) as e:
            problems.append(f"{where}: bad runId or eventTime: {e}")
        facets = [("run", event["run"].get("facets", {})), ("job", event["job"].get("facets", {}))]
        for d in event.get("inputs", []) + event.get("outputs", []):
            for key in ("facets", "inputFacets", "outputFacets"):
                facets.append((f"{d['namespace']}:{d['name']} {key}", d.get(key, {})))
        for place, group in facets:
            for key, facet in group.items():
                url = facet.get("_schemaURL", "")
                if key in CLIENT_URLS and url != CLIENT_URLS[key]:
                    problems.append(f"{where} {place} {key}: _schemaURL {url} is not the client's {CLIENT_URLS[key]}")
                check(validator_for, url, facet, f"{where} {place} {key}", problems)
    for p in problems:
        print(p)
    print(f"{len(events)} events, {len(problems)} problems")
    sys.exit(1 if problems or not events else 0)


if __name__ == "__main__":
    main()
