"""A sixth administration no one here wrote: a tax directorate's SOAP service whose WSDL imports its types from
a remote URL. Everything it needs — WSDL, local copy of the remote schema, record schema, TOML — is written by
the test into a directory of its own, and a small SOAP server answers on loopback."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from lxml import etree

TYPES_URL = "https://schemas.tax.example.ma/income/v2/types.xsd"
TNS = "urn:ma:dgi:income:2"
TYPES_NS = "urn:ma:dgi:income:types:2"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

# who the directorate knows: idcs -> (year -> declared income)
INCOMES = {"1000000001": {"2025": "48250.50"}, "1000000002": {"2025": "0"}}

TYPES_XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{TYPES_NS}"
           xmlns:t="{TYPES_NS}" elementFormDefault="qualified">
  <xs:complexType name="IncomeStatement">
    <xs:sequence>
      <xs:element name="taxpayerId" type="xs:string"/>
      <xs:element name="fiscalYear" type="xs:string"/>
      <xs:element name="declaredIncome" type="xs:decimal"/>
      <xs:element name="filedOn" type="xs:date" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
</xs:schema>
"""

WSDL = f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{TNS}" xmlns:t="{TYPES_NS}"
    name="IncomeService" targetNamespace="{TNS}">
  <wsdl:types>
    <xs:schema targetNamespace="{TNS}" elementFormDefault="qualified">
      <xs:import namespace="{TYPES_NS}" schemaLocation="{TYPES_URL}"/>
      <xs:element name="GetIncome">
        <xs:complexType><xs:sequence>
          <xs:element name="taxpayerId" type="xs:string"/>
          <xs:element name="fiscalYear" type="xs:string"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="GetIncomeResponse">
        <xs:complexType><xs:sequence>
          <xs:element name="outcome" type="xs:string"/>
          <xs:element name="statement" type="t:IncomeStatement" minOccurs="0"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="GetIncomeRequest"><wsdl:part name="parameters" element="tns:GetIncome"/></wsdl:message>
  <wsdl:message name="GetIncomeReply"><wsdl:part name="parameters" element="tns:GetIncomeResponse"/></wsdl:message>
  <wsdl:portType name="IncomePort">
    <wsdl:operation name="GetIncome">
      <wsdl:input message="tns:GetIncomeRequest"/><wsdl:output message="tns:GetIncomeReply"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="IncomeBinding" type="tns:IncomePort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetIncome">
      <soap:operation soapAction="{TNS}#GetIncome"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="IncomeService">
    <wsdl:port name="IncomePort" binding="tns:IncomeBinding"><soap:address location="http://localhost/"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""

RECORD_SCHEMA = """{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Income record",
  "type": "object",
  "required": ["idcs", "fiscal_year", "declared_income_mad", "filed_on"],
  "additionalProperties": false,
  "properties": {
    "idcs": {"type": "string", "pattern": "^[0-9]{10}$"},
    "fiscal_year": {"type": "string", "pattern": "^[0-9]{4}$"},
    "declared_income_mad": {"type": "number", "minimum": 0},
    "filed_on": {"type": ["string", "null"]}
  }
}
"""


def toml(directory: Path, base_url: str, *, with_copy: bool = True) -> str:
    imports = f'imports = {{ "{TYPES_URL}" = "{directory / "copies" / "types.xsd"}" }}' if with_copy else ""
    return f"""# The tax directorate's income service: configuration only.
[connector]
name = "tax"
kind = "soap"
base_url = "{base_url}"
audience = "dgi.income"
timeout_s = 2.0

[connector.options]
wsdl = "{directory / "income.wsdl"}"
path = "/dgi/income"
{imports}

[operations.income]
summary = "A taxpayer's declared income for a fiscal year"
record = "income"
record_schema = "{directory / "income.json"}"
soap_operation = "GetIncome"
params.idcs = {{ identifier = true, pattern = "^[0-9]{{10}}$", description = "The taxpayer's IDCS" }}
params.year = {{ pattern = "^[0-9]{{4}}$", description = "The fiscal year, YYYY" }}
args = {{ taxpayerId = "{{idcs}}", fiscalYear = "{{year}}" }}
status = {{ at = "outcome", found = "OK", not_found = "UNKNOWN_TAXPAYER" }}

[operations.income.fields]
idcs = "statement.taxpayerId"
fiscal_year = "statement.fiscalYear"
declared_income_mad = {{ at = "statement.declaredIncome", type = "decimal" }}
filed_on = {{ at = "statement.filedOn", type = "date", optional = true }}
"""


def write(directory: Path, base_url: str, *, with_copy: bool = True) -> Path:
    """The administration's files under ``directory``; returns its TOML."""
    (directory / "copies").mkdir(parents=True, exist_ok=True)
    (directory / "copies" / "types.xsd").write_text(TYPES_XSD, encoding="utf-8")
    (directory / "income.wsdl").write_text(WSDL, encoding="utf-8")
    (directory / "income.json").write_text(RECORD_SCHEMA, encoding="utf-8")
    path = directory / "connectors" / "tax.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml(directory, base_url, with_copy=with_copy), encoding="utf-8")
    return path


class IncomeServer:
    """The directorate's SOAP endpoint: answers GetIncome; counts calls and keeps the Authorization headers."""

    def __init__(self) -> None:
        self.calls = 0
        self.authorizations: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/dgi/income", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.authorizations.append(request.headers.get("Authorization", ""))
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        envelope = etree.fromstring(await request.read(), parser)
        taxpayer = envelope.findtext(f".//{{{TNS}}}taxpayerId")
        year = envelope.findtext(f".//{{{TNS}}}fiscalYear")
        income = INCOMES.get(taxpayer or "", {}).get(year or "")
        if income is None:
            body = f"<r:GetIncomeResponse xmlns:r='{TNS}'><r:outcome>UNKNOWN_TAXPAYER</r:outcome></r:GetIncomeResponse>"
        else:
            body = (f"<r:GetIncomeResponse xmlns:r='{TNS}' xmlns:t='{TYPES_NS}'><r:outcome>OK</r:outcome>"
                    f"<r:statement><t:taxpayerId>{taxpayer}</t:taxpayerId><t:fiscalYear>{year}</t:fiscalYear>"
                    f"<t:declaredIncome>{income}</t:declaredIncome><t:filedOn>2026-03-31</t:filedOn>"
                    "</r:statement></r:GetIncomeResponse>")
        xml = (f"<?xml version='1.0' encoding='utf-8'?><s:Envelope xmlns:s='{SOAP_ENV}'>"
               f"<s:Body>{body}</s:Body></s:Envelope>")
        return web.Response(body=xml.encode(), content_type="text/xml", charset="utf-8")
