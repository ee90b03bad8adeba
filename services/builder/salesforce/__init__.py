"""The Salesforce adapter: OAuth, REST, Metadata (SOAP and deploy), JWT bearer, certificates."""
