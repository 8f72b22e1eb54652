/*
 * A self-signed test certificate (P-256, CN and SAN "localhost", valid for 100 years) and a
 * second one for "other.test" (SNI), with their keys: for the TLS unit test and fuzz target
 * only, never for a deployment. Made with the openssl CLI. Header only.
 */
#ifndef RC_TLS_TEST_PEM_H
#define RC_TLS_TEST_PEM_H

static const char test_cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBlTCCATugAwIBAgIUB18MyhA9+nFhv63t72m4E/ohKCowCgYIKoZIzj0EAwIw\n"
	"FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMzEyMjk0N1oYDzIxMjYxMTA5\n"
	"MTIyOTQ3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
	"PQMBBwNCAATz5rCQ1qTDoxUkbpBMvsIBmlEUR6q5jYEk4GAlXSDw9jzV6SRlVc1z\n"
	"hQrKp2M7bpN7+veuKf/Z5XEpJdOS5cA3o2kwZzAdBgNVHQ4EFgQUTTQ515GN692G\n"
	"zWYvFFMyzm35GD0wHwYDVR0jBBgwFoAUTTQ515GN692GzWYvFFMyzm35GD0wDwYD\n"
	"VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID\n"
	"SAAwRQIgcvufcUnZZ2i31pDAqReUlQ4mWloyASFj7qtlEKZwIe0CIQD2wXU29/Q1\n"
	"kJ/PCC+RZVlamWvNoIHsW5kJe5CAvMVtww==\n"
	"-----END CERTIFICATE-----\n";

static const char test_key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgE3JzU0KeJf4EF0Ra\n"
	"LjY4a+tC52JYmVDHMIS+O2z4GWKhRANCAATz5rCQ1qTDoxUkbpBMvsIBmlEUR6q5\n"
	"jYEk4GAlXSDw9jzV6SRlVc1zhQrKp2M7bpN7+veuKf/Z5XEpJdOS5cA3\n"
	"-----END PRIVATE KEY-----\n";

static const char other_cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBmDCCAT6gAwIBAgIUNmsk6pPn4U/s9OadoqZMELDvqngwCgYIKoZIzj0EAwIw\n"
	"FTETMBEGA1UEAwwKb3RoZXIudGVzdDAgFw0yNjEyMDMxMjI5NDdaGA8yMTI2MTEw\n"
	"OTEyMjk0N1owFTETMBEGA1UEAwwKb3RoZXIudGVzdDBZMBMGByqGSM49AgEGCCqG\n"
	"SM49AwEHA0IABM0tCd6ta7b1JoEAvKYtselasgsgh/C1TT3tTrisnQAk8+qGKaXq\n"
	"AvcdwK2vFCGqa0Pa81Uvveuan1CjakDzOaCjajBoMB0GA1UdDgQWBBQeH2gZihio\n"
	"0P07FCrGQ5J/pVqMwDAfBgNVHSMEGDAWgBQeH2gZihio0P07FCrGQ5J/pVqMwDAP\n"
	"BgNVHRMBAf8EBTADAQH/MBUGA1UdEQQOMAyCCm90aGVyLnRlc3QwCgYIKoZIzj0E\n"
	"AwIDSAAwRQIhAIWzInxjCu1j2JghktM+FYlfVZPRjrT4RZJ3qQdwOhabAiAJlJka\n"
	"qyzRo1Gdk2Fv8rDufA1A4FIvU1jEta3GOyp46w==\n"
	"-----END CERTIFICATE-----\n";

static const char other_key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6HqeicZm+99nkCt7\n"
	"B87fdQeLg8TFYu9kaBVzR+/3DoahRANCAATNLQnerWu29SaBALymLbHpWrILIIfw\n"
	"tU097U64rJ0AJPPqhiml6gL3HcCtrxQhqmtD2vNVL73rmp9Qo2pA8zmg\n"
	"-----END PRIVATE KEY-----\n";

#endif
