// Validates FHIR R4 resources offline with HAPI FHIR's instance validator and the bundled R4
// core definitions: the base resource profiles, their invariants and required bindings.
// Code systems it does not carry (VN Core's, ICD-10, the project's) are reported as
// information or warnings, never errors.
//
//   java -cp "<libs>/*" Validate.java FILE_OR_DIRECTORY...
//
// Prints one JSON object per file: {"file": ..., "issues": [{"severity", "location", "message"}]}.
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

public class Validate {
    public static void main(String[] args) throws IOException {
        FhirContext context = FhirContext.forR4();
        ValidationSupportChain chain = new ValidationSupportChain(
                new DefaultProfileValidationSupport(context),
                new InMemoryTerminologyServerValidationSupport(context),
                new CommonCodeSystemsTerminologyService(context));
        FhirInstanceValidator instanceValidator = new FhirInstanceValidator(chain);
        instanceValidator.setAnyExtensionsAllowed(true);
        FhirValidator validator = context.newValidator().registerValidatorModule(instanceValidator);

        List<Path> files = new ArrayList<>();
        for (String arg : args) {
            Path path = Path.of(arg);
            if (Files.isDirectory(path)) {
                try (Stream<Path> listing = Files.list(path)) {
                    listing.filter(p -> p.toString().endsWith(".json")).sorted().forEach(files::add);
                }
            } else {
                files.add(path);
            }
        }
        for (Path file : files) {
            String text = Files.readString(file, StandardCharsets.UTF_8);
            ValidationResult result = validator.validateWithResult(text);
            StringBuilder line = new StringBuilder("{\"file\": ").append(quote(file.getFileName().toString()))
                    .append(", \"issues\": [");
            boolean first = true;
            for (SingleValidationMessage m : result.getMessages()) {
                if (!first) line.append(", ");
                first = false;
                line.append("{\"severity\": ").append(quote(m.getSeverity().getCode()))
                        .append(", \"location\": ").append(quote(String.valueOf(m.getLocationString())))
                        .append(", \"message\": ").append(quote(m.getMessage())).append("}");
            }
            System.out.println(line.append("]}"));
        }
    }

    private static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
                }
            }
        }
        return out.append('"').toString();
    }
}
